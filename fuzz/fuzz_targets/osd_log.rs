//! Fuzz target: OSD metadata log group headers and records.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_osd::fuzzing::log(data));
