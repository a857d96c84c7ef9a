//! Fuzz target: message and bulk frame headers (`MsgHeader::decode`, `check_body`,
//! `BulkFrameHeader::decode`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_wire::fuzzing::frame(data));
