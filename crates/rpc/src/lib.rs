//! sheen-rpc.
