"""Reproducible benchmarks with baselines measured in the same run.

``python -m benchmarks run [--quick] [--only NAME] [--repeat N]`` starts throwaway servers (the
same ones the tests use), generates deterministic data, runs every scenario against the real
``syncengine`` CLI as a subprocess (so its peak RSS is the engine's own), checks the target
against the source and writes ``benchmarks/results/latest.{json,md,png}``. See docs/benchmarks.md.
"""
