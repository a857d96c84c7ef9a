//! Fuzz target: RDMA one-sided access checks against a hostile peer's region table.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_transport::rdma::fuzzing::one_sided(data));
