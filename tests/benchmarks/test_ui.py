"""The web UI load benchmark serves real requests from concurrent clients and reports what it measured."""

import pytest

from benchmarks.ui import bench_ui, format_ui_report


@pytest.mark.slow  # a load benchmark: real servers, concurrent clients
def test_load_rows_cover_each_client_count_and_the_report_compares_batching(tiny_pipeline, tiny_student):
    # the batched server is loaded again with requests for the student, picked by name per request
    rows = bench_ui(tiny_pipeline, clients=(1, 3), requests_each=2, steps=2, batches=(1, 3),
                    student=tiny_student.folder)
    teacher, student = tiny_pipeline.name, tiny_student.folder.name
    assert [(r["max_batch"], r["model"], r["clients"], r["requests"]) for r in rows] == [
        (1, teacher, 1, 2), (1, teacher, 3, 6), (3, teacher, 1, 2), (3, teacher, 3, 6), (3, student, 1, 2),
        (3, student, 3, 6)]
    for r in rows:
        assert r["requests_per_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"] and r["rss_warm_mb"] > 100
    report = format_ui_report(rows, "tiny")
    assert [r["steps"] for r in rows] == [2, 2, 2, 2, 2, 2]  # the student's own default: 2
    assert f"| 3 | {teacher} | 2 | 3 | 6 |" in report and "at 3 clients:" in report and "x the requests/s" in report
    assert "at 3 clients, --max-batch 3: p95" in report and f"with {student} against" in report
    assert report.count("MiB after warm-up") == 2


@pytest.mark.slow  # 4 pages flooding a real server
def test_the_flood_times_generate_idle_and_while_pages_drag_a_live_slider(tiny_pipeline, tiny_student):
    from benchmarks.ui import bench_live_flood, format_flood_report

    result = bench_live_flood(tiny_pipeline, tiny_student.folder, clients=4, requests=3, steps=2)
    assert len(result["idle"]) == len(result["flooded"]) == 3 and all(t > 0 for t in result["flooded"])
    assert result["live_answers"] > 0 and result["errors"] == [] and result["tracebacks"] == 0
    report = format_flood_report(result, str(tiny_pipeline), str(tiny_student.folder))
    assert "while 4 pages drag the Seed walk's live position" in report and "x idle (target <= 2x)" in report


def _row(batch, model, clients, rps, p95, rss=(500.0, 510.0)):
    return {"max_batch": batch, "model": model, "steps": 2, "clients": clients, "requests": 2 * clients,
            "requests_per_s": rps, "p50_s": p95 / 2, "p95_s": p95, "rss_warm_mb": rss[0], "rss_after_mb": rss[1]}


def test_the_report_compares_batching_and_the_student_at_the_most_clients():
    rows = [_row(1, "tiny", 1, 1.0, 1.0), _row(1, "tiny", 4, 1.0, 4.0), _row(4, "tiny", 1, 1.0, 1.0, (400.0, 400.0)),
            _row(4, "tiny", 4, 2.5, 2.0), _row(4, "student", 4, 10.0, 0.5)]
    report = format_ui_report(rows, "tiny")
    assert "| 4 | tiny | 2 | 4 | 8 | 2.50 | 1.00 | 2.00 |" in report
    assert "--max-batch 1: RSS 500 MiB after warm-up, 510 MiB after the load (+2.0%)" in report
    assert "at 4 clients: 2.50x the requests/s with --max-batch 4 over 1; p95 2.00 s vs 4.00 s" in report
    assert report.endswith("at 4 clients, --max-batch 4: p95 0.50 s with student against 2.00 s with tiny; "
                           "4.00x the requests/s")
