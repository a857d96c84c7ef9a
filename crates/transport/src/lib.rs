//! sheen-transport.
