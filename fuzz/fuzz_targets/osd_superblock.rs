//! Fuzz target: the OSD superblock decoder.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_osd::fuzzing::superblock(data));
