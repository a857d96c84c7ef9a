//! Fuzz target: every message body type through `sheen_wire::decode`; the first byte picks the
//! type.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_wire::fuzzing::body(data));
