"""Benchmarks behind ``vaelab benchmark``: the anomaly protocols (:mod:`.anomaly`), synthetic
anomalies of known types (:mod:`.synthetic`), and the scoring cells they share (:mod:`.scoring`)."""
