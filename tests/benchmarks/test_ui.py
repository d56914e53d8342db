"""The web UI load benchmark serves real requests from concurrent clients and reports what it measured."""

import pytest

from benchmarks.ui import bench_ui, format_ui_report

pytest.importorskip("gradio_client")


def test_load_rows_cover_each_client_count_and_the_report_compares_batching(tiny_pipeline):
    rows = bench_ui(tiny_pipeline, clients=(1, 3), requests_each=2, steps=2, batches=(1, 3))
    assert [(r["max_batch"], r["clients"], r["requests"]) for r in rows] == [(1, 1, 2), (1, 3, 6), (3, 1, 2),
                                                                           (3, 3, 6)]
    for r in rows:
        assert r["requests_per_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"] and r["rss_warm_mb"] > 100
    report = format_ui_report(rows, "tiny")
    assert "| 3 | 3 | 6 |" in report and "at 3 clients:" in report and "x the requests/s" in report
    assert report.count("MiB after warm-up") == 2
