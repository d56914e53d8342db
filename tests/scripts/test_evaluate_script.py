"""scripts/evaluate.py end to end: a model without unique captions, the card only on request, one-line errors."""

import math

import pytest
import yaml
from support import no_model_libraries, run_script

from ldm.evaluate import LAYOUT_CHECKS


def _table(stdout: str) -> dict[str, float]:
    """measure -> our value, from the Markdown table the script prints."""
    rows = [line.strip("| ").split(" | ") for line in stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ["measure", "ours", "baseline", "target"]
    return {cells[0]: float(cells[1]) for cells in rows[1:]}


def test_a_shapes_model_gets_the_measures_that_apply_and_one_note(tiny_run):
    # the tiny model trains on procedural shapes: 54 captions, each on many images, and no emoji families
    proc = run_script("scripts/evaluate.py", "--model", str(tiny_run), "--device", "cpu")
    assert "Traceback" not in proc.stderr
    measured = _table(proc.stdout)
    redrawn = {f"VAE held-out PSNR, redrawn {how} (dB)" for how, _, _ in LAYOUT_CHECKS}
    assert set(measured) == {"VAE held-out PSNR (dB)", "diversity over 8 seeds (mean pairwise distance)",
                             "seed walk max/median frame change", "prompt morph max/median frame change",
                             "prompt morph largest frame change, share of the whole"} | redrawn
    assert all(math.isfinite(v) for v in measured.values())
    assert all(measured[name] > 5 for name in redrawn)
    assert measured["VAE held-out PSNR (dB)"] > 10 and measured["diversity over 8 seeds (mean pairwise distance)"] > 0
    notes = [line for line in proc.stdout.splitlines() if line.startswith("Not measured")]
    assert len(notes) == 1 and "prompt fidelity" in notes[0] and "generalisation" in notes[0]
    assert not (tiny_run / "README.md").exists()  # the card is written only with --write-card


def test_compare_puts_another_model_in_a_column_beside(tiny_run, tiny_pipeline):
    # how a release's card shows the release before it
    proc = run_script("scripts/evaluate.py", "--model", str(tiny_run), "--compare", str(tiny_pipeline),
                      "--device", "cpu")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    header = lines[0].strip("| ").split(" | ")
    assert header[0] == "measure" and header[1].startswith(tiny_run.name) and header[2].startswith(tiny_pipeline.name)
    psnr = next(line for line in lines if line.startswith("| VAE held-out PSNR (dB)")).strip("| ").split(" | ")
    assert float(psnr[1]) != float(psnr[2])  # two models, two measurements


@pytest.mark.slow  # evaluate.py on a distilled student, in a subprocess
def test_a_student_beside_its_teacher_gets_the_agreement_report(tiny_pipeline, tmp_path):
    from support import make_random_pipeline

    student = make_random_pipeline(tmp_path / "student", seed=1, student=True)
    proc = run_script("scripts/evaluate.py", "--model", str(student), "--teacher", str(tiny_pipeline),
                      "--device", "cpu")
    # the shapes' captions each name many images, so there is nothing to agree on; said in one line
    assert "agreement with the teacher: not measured" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow  # evaluate.py end to end, in a subprocess
def test_a_plain_image_folder_gets_the_generic_measures_and_names_what_it_lacks(tiny_pipeline, tmp_path):
    # a user's own folder declares no evaluation tables: even captions that name emoji families ("my cat") get no
    # emoji paraphrases; its captions, images and held-out split support the rest
    import json

    from support import shapes_folder

    folder = shapes_folder(tmp_path / "mine", count=12)
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    (folder / "metadata.jsonl").write_text("".join(json.dumps({**r, "text": f"my cat {k}, {r['text']}"}) + "\n"
                                                   for k, r in enumerate(records)))
    (folder / "heldout.txt").write_text("")  # it keeps no image back (as data.heldout_fraction=0 does)
    proc = run_script("scripts/evaluate.py", "--model", str(tiny_pipeline), "--data", str(folder), "--captions", "4",
                      "--steps", "2", "--device", "cpu")
    assert "Traceback" not in proc.stderr
    measured = _table(proc.stdout)
    assert set(measured) == {"prompt fidelity top-1 (4 captions)", "prompt fidelity top-5",
                             "diversity over 8 seeds (mean pairwise distance)", "seed walk max/median frame change",
                             "prompt morph max/median frame change",
                             "prompt morph largest frame change, share of the whole"}
    assert all(math.isfinite(v) for v in measured.values())
    notes = [line for line in proc.stdout.splitlines() if line.startswith("Not measured")]
    assert notes == ["Not measured on this dataset: the VAE's held-out PSNR (the dataset has no held-out images); "
                     "generalisation (the dataset declares no paraphrases); "
                     "general prompts (the dataset declares no general prompts)."]


def _files_config(tmp_path, tiny_pipeline) -> str:
    config = yaml.safe_load((tiny_pipeline / "ldm_config.yaml").read_text())
    config["data"].update(source="files", path=str(tmp_path / "data" / "emoji64"))
    path = tmp_path / "emoji.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("card_without_write", "add --write-card"),
    ("no_dataset", "build it first"),
    ("captions", "--captions must be at least 1"),
    ("compare_missing", "--compare"),
])
def test_bad_arguments_are_one_line_before_torch(tiny_pipeline, tmp_path, case, message):
    args = {
        "card_without_write": ["--card", str(tmp_path / "card.md")],
        "no_dataset": ["--config", _files_config(tmp_path, tiny_pipeline)],
        "captions": ["--captions", "0"],
        "compare_missing": ["--compare", str(tmp_path / "no-such-model")],
    }[case]
    proc = run_script("scripts/evaluate.py", "--model", str(tiny_pipeline), *args, check=False,
                      env=no_model_libraries(tmp_path / "libs"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "card.md").exists()
