//! sheen-client.
