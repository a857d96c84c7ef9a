//! Fuzz target: the namespace's stored key and value codec; the first byte picks the decoder.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_namespace::fuzzing::stored_value(data));
