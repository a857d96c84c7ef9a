//! sheen-wire.
