//! sheen-mgs.
