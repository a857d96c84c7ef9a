//! sheen-oss.
