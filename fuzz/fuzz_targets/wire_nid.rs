//! Fuzz target: NID parsing.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_wire::fuzzing::nid(data));
