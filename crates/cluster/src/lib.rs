//! sheen-cluster.
