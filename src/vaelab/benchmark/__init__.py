"""Benchmarks behind ``vaelab benchmark``: anomaly protocols (and, later, synthetic anomalies)."""
