//! Fuzz target: the client's mount spec parser.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_client::fuzzing::mount_spec(data));
