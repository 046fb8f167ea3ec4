"""Reproducible benchmarks; each module has run(quick) -> dict and a __main__."""
