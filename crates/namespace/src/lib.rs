//! sheen-namespace.
