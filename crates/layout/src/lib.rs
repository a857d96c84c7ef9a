//! sheen-layout.
