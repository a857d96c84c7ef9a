//! Benchmarks of Sheen: criterion micro-benchmarks of the hot paths (`benches/hot_paths.rs`:
//! frame header, body codec, striping, crc32c, the OSD's io_uring read and write) and the
//! `sheen-bench` binary (`src/bin/sheen-bench/`), IOR- and mdtest-like workloads through a
//! mount or the native client. `docs/BENCHMARKS.md` explains both and records results.
