"""Benchmarks (not tests): every stage's throughput against its limit, JSON out.

`python -m bench` runs them all (bench/run.py); `python bench/convert.py`
measures the conversion stage alone.
"""
