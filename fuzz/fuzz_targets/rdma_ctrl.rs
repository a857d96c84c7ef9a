//! Fuzz target: RDMA transport control frames and bulk descriptors.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sheen_transport::rdma::fuzzing::ctrl(data));
