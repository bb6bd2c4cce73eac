"""Benchmarks for needs-tracker, run with `make bench` (or `python -m bench --quick`).

They print times next to a baseline measured in the same run, and ratios against it:
machines are noisy, so there are no absolute targets and no timed unit tests.
"""
