"""Benchmark evaluation: generate with any backend, judge with the project's verifier, report accuracy with CIs."""
