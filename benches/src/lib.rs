//! Benchmarks of gate against its peers; see `benches/`.
