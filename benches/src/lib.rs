//! Benchmarks of Sheen's hot paths (criterion, under `benches/`). The IOR- and mdtest-like
//! cluster workloads come with the benchmark issue; `docs/BENCHMARKS.md` records results.
