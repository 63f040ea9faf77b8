//! Benchmarks of project 1 (placeholder until the benchmarks land).
fn main() {}
