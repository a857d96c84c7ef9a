//! sheen-daemon.
