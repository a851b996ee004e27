"""Benchmarks: engine overhead, attention scaling, latency, throughput."""
