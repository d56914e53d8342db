"""The scheduler sweep measures prompt fidelity and time per setting, with stock defaults as the first row."""

import json

from benchmarks.schedulers import format_sweep, scheduler_sweep
from ldm.data.shapes import make_shape


def test_scheduler_sweep_reports_fidelity_and_time(tiny_pipeline, tmp_path):
    with open(tmp_path / "metadata.jsonl", "w") as meta:
        for i in range(6):
            make_shape(i, 32)[0].save(tmp_path / f"{i}.png")
            meta.write(json.dumps({"file_name": f"{i}.png", "text": f"shape number {i}"}) + "\n")
    (tmp_path / "config.yaml").write_text(f"data: {{source: files, path: {tmp_path}, resolution: 32}}\n")
    rows = scheduler_sweep(tiny_pipeline, tmp_path / "config.yaml", captions=4, sweep=(("ddim", 2), ("euler", 3)))
    # the first row is stock diffusers' defaults: the folder's own scheduler (DDIM), 50 steps, CFG 7.5, fp32
    assert [(r["scheduler"], r["steps"]) for r in rows] == [("stock (ddim)", 50), ("ddim", 2), ("euler", 3)]
    assert (rows[0]["guidance"], rows[0]["precision"]) == (7.5, "fp32")
    assert rows[1]["guidance"] != 7.5  # ours: the model's own default guidance
    assert all(0 <= r["top1"] <= r["top5"] <= 1 and r["s_per_image"] > 0 for r in rows)
    assert "top-1" in format_sweep(rows).splitlines()[0]
    no_stock = scheduler_sweep(tiny_pipeline, tmp_path / "config.yaml", captions=4, sweep=(("ddim", 2),), stock=False)
    assert [r["scheduler"] for r in no_stock] == ["ddim"]
    assert no_stock[0]["top1"] == rows[1]["top1"]  # same captions and seeds: the same images
