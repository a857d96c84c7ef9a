//! Fuzz target: OSD checkpoint header and body.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_osd::fuzzing::checkpoint(data));
