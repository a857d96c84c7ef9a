//! sheen-osd.
