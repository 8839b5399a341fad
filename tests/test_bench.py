"""Smoke run of the benchmarks: they run and report; no speed is asserted."""

import json

from tests.conftest import run_cli


def test_convert_benchmark_reports_the_ratio_to_the_decode_limit(tmp_path):
    out = tmp_path / "bench.json"
    run_cli("bench/convert.py", "--images", 12, "--size", 64, "--workers", 2, "--repeats", 1,
            "--work", tmp_path / "work", "--out", out)
    record = json.loads(out.read_text())
    assert record["images"] == 12 and record["workers"] == 2
    assert record["decode_limit"]["images_per_s"] > 0 and record["convert"]["images_per_s"] > 0
    assert record["ratio_convert_to_decode"] > 0
    assert record["peak_rss_mb_largest_process"] > 0
