//! sheen-mds.
