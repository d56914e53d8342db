"""scripts/build_explorer_map.py: a map file the explorer opens without the images; one-line errors."""

import json

import pytest
from support import no_model_libraries, run_script, shapes_folder

from ldm.explore import MAP_FILE, DatasetView


@pytest.mark.slow  # the script end to end, in a subprocess
def test_it_writes_a_map_of_the_folder_that_opens_without_it(tiny_pipeline, tiny_model, tmp_path):
    data = shapes_folder(tmp_path / "shapes", count=20)
    out = tmp_path / "model-map.safetensors"
    proc = run_script("scripts/build_explorer_map.py", "--model", str(tiny_pipeline), "--data", str(data),
                      "--points", "12", "--out", str(out), "--device", "cpu")
    assert proc.stdout.startswith(f"{out}: 12 images, ")
    for image in data.glob("*.png"):
        image.unlink()  # the map needs none of them
    view = DatasetView.from_map(out, tiny_model)
    captions = {json.loads(line)["text"] for line in (data / "metadata.jsonl").read_text().splitlines()}
    assert len(view) == 12 and set(view.captions) <= captions
    assert not (tiny_pipeline / MAP_FILE).exists()  # --out was followed


@pytest.mark.parametrize("args, message", [
    (["--points", "2"], "--points must be at least 3, got 2"),
    (["--model", "no/such/model"], "no/such/model"),
])
def test_bad_arguments_are_one_line_before_torch(tmp_path, args, message):
    proc = run_script("scripts/build_explorer_map.py", *args, check=False, env=no_model_libraries(tmp_path / "libs"))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
