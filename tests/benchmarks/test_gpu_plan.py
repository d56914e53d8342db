"""The GPU plan: its data loads as real configs, a call's pieces come back whole, time stops a child, and (slow) a
CPU dry run takes every stage through the real scripts and back into a pipeline folder and a new state."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from support import run_script

from benchmarks.gpu_plan import (
    PLAN,
    ROOT,
    STATE,
    check_back,
    load_plan,
    load_state,
    pack_pieces,
    run_until,
    step_budget,
    steps_per_s,
    train_command,
    write_state,
)
from ldm.config import load_config
from ldm.errors import LdmError


def _overrides(argv: list[str]) -> list[str]:
    return [a for a in argv if "=" in a and not a.startswith("-")]


@pytest.mark.parametrize("dry", [False, True])
def test_every_stage_of_the_plan_is_a_valid_config(dry):
    plan = load_plan()
    assert [s.name for s in plan.stages][:1] == [load_state()["next_stage"]]
    for stage in plan.stages:
        argv = train_command(stage, Path("run"), 10, init=Path("init"), data=Path("data"), dry=dry)
        cfg = load_config(argv[argv.index("--config") + 1], _overrides(argv))  # an unknown key is an LdmError
        assert cfg.train_unet.batch_size == (4 if dry else int(dict(
            a.split("=") for a in stage.train)["train_unet.batch_size"]))
        assert cfg.finetune.method == load_config(stage.config).finetune.method  # a dry run trains the same kind
        assert ("--data" in argv) != dry and ("--init-from" in argv) == (stage.init_from is not None)


def test_the_step_budget_follows_the_last_gpu_rate_of_the_stage():
    stage = load_plan().stages[0]
    state = {"runs": [{"stage": stage.name, "device": "cuda", "steps_per_s": 7.5},
                      {"stage": stage.name, "device": "cpu", "steps_per_s": 0.1}]}
    assert steps_per_s(stage, state) == 7.5
    assert steps_per_s(stage, {"runs": []}) == stage.steps_per_s
    assert step_budget(7.5, 400) == 3000 and step_budget(0.001, 10) == 1


def test_a_bad_plan_or_state_is_one_line(tmp_path):
    bad = tmp_path / "plan.yaml"
    bad.write_text(PLAN.read_text().replace("init_from: null", "init_from: nowhere"))
    with pytest.raises(LdmError, match="init_from must be one of"):
        load_plan(bad)
    bad.write_text("stages: [")
    with pytest.raises(LdmError) as err:
        load_plan(bad)
    assert "\n" not in str(err.value)
    (tmp_path / "state.json").write_text('{"next_stage": "teacher-r5a"}')
    with pytest.raises(LdmError, match="unreadable"):
        load_state(tmp_path / "state.json")
    with pytest.raises(LdmError, match="does not have"):
        load_plan().stage("no-such-stage")


def test_pieces_come_back_whole(tiny_pipeline, tmp_path):
    from benchmarks.gpu_plan import bring_back

    out = tmp_path / "out"
    out.mkdir()
    state = json.loads(STATE.read_text()) | {"next_stage": "teacher-r5b",
                                              "weights": {"stage": "teacher-r5a", "steps": 3}}
    state["weights"].update(pack_pieces(tiny_pipeline, out, 64 * 1024))
    write_state(state, out / "gpu_state.json")
    assert len(state["weights"]["pieces"]) > 2  # the tiny UNet alone is several 64 KiB pieces
    assert all((out / p).stat().st_size <= 64 * 1024 for p in state["weights"]["pieces"])
    new = bring_back(out, tmp_path / "runs", tmp_path / "state.json")
    folder = Path(new["weights"]["folder"])
    assert folder == tmp_path / "runs" / "teacher-r5a" and new["next_stage"] == "teacher-r5b"
    for path in tiny_pipeline.rglob("*"):
        if path.is_file():
            assert (folder / path.relative_to(tiny_pipeline)).read_bytes() == path.read_bytes(), path
    assert load_state(tmp_path / "state.json")["weights"]["folder"] == str(folder)
    (out / state["weights"]["pieces"][1]).write_bytes(b"broken")
    with pytest.raises(LdmError, match="do not add up"):
        bring_back(out, tmp_path / "runs2", tmp_path / "state.json")


def test_what_comes_back_is_checked_against_the_tools_limits(tmp_path):
    limits = load_plan().limits
    for i in range(limits["back_files"]):
        (tmp_path / f"f{i}").write_bytes(b"x")
    check_back(tmp_path, limits)
    (tmp_path / "one-too-many").write_bytes(b"x")
    with pytest.raises(LdmError, match="files"):
        check_back(tmp_path, limits)


def test_time_stops_a_child_with_ctrl_c_so_it_can_save(tmp_path):
    saved = tmp_path / "saved"
    child = [sys.executable, "-c", "import time, pathlib\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
             f"    pathlib.Path({str(saved)!r}).write_text('step in hand')\n    raise SystemExit(130)"]
    t0 = time.monotonic()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the plan started in the background: children inherit it
    try:
        with open(tmp_path / "log", "w") as log:
            rc, stopped = run_until(child, time.monotonic() + 1.5, {}, log, grace_s=20)
    finally:
        signal.signal(signal.SIGINT, before)
    assert stopped and rc == 130 and saved.read_text() == "step in hand"
    assert time.monotonic() - t0 < 20
    assert "stopped by time" in (tmp_path / "log").read_text()


def test_a_sigterm_of_the_plan_is_passed_on_as_ctrl_c(tmp_path):
    import os
    import signal
    import threading

    from benchmarks.gpu_plan import sigterm_as_ctrl_c

    saved = tmp_path / "saved"
    child = [sys.executable, "-c", "import time, pathlib\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
             f"    pathlib.Path({str(saved)!r}).write_text('step in hand')\n    raise SystemExit(130)"]
    previous = signal.getsignal(signal.SIGTERM)
    sigterm_as_ctrl_c()
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        with open(tmp_path / "log", "w") as log:
            rc, stopped = run_until(child, time.monotonic() + 60, {}, log, grace_s=20)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert stopped and rc == 130 and saved.read_text() == "step in hand"


@pytest.mark.slow
def test_the_packed_encoder_encodes_the_plans_texts_as_the_package_does(tmp_path):
    import torch

    from benchmarks.gpu_pack import pack_encoder, plan_vocabulary, unpack_encoder
    from ldm.models import encode_prompts, load_text_encoder

    texts = plan_vocabulary()
    model = pack_encoder(tmp_path / "site", texts)
    size = sum(p.stat().st_size for p in model.rglob("*"))
    assert size < 26 * 2**20  # the package's folder: 87 MiB
    assert unpack_encoder(tmp_path / "site") == model
    prompts = texts[::50] + ["burning heart", "a fruit"]
    tokenizer, encoder = load_text_encoder("minilm", 24)
    tokenizer2, encoder2 = load_text_encoder(str(model), 24)
    with torch.no_grad():
        a, b = encode_prompts(tokenizer, encoder, prompts), encode_prompts(tokenizer2, encoder2, prompts)
    # fp16 storage: measured 0.045 at most on values up to 6.3, every prompt's cosine over 0.99999
    assert (a - b).abs().max() < 0.1
    assert torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min() > 0.9999


@pytest.mark.slow
def test_a_cpu_dry_run_takes_every_stage_through_the_scripts_and_back(tiny_pipeline, tmp_path):
    state_path = tmp_path / "state.json"
    shutil.copy(STATE, state_path)
    out = tmp_path / "out"
    proc = run_script("scripts/gpu_plan.py", "--state", str(state_path), "run", "--device", "cpu", "--dry-run",
                      "--max-steps", "2", "--stages", str(len(load_plan().stages)), "--release", str(tiny_pipeline),
                      "--out", str(out), "--work", str(tmp_path / "work"))
    returned = load_state(out / "gpu_state.json")
    plan = load_plan()
    assert [r["stage"] for r in returned["runs"]] == [s.name for s in plan.stages], proc.stdout
    assert all(r["rc"] == 0 and r["exported"] and r["steps"] == 2 for r in returned["runs"])
    assert set(returned["figures"]) == {f.name for f in plan.figures}
    assert returned["next_stage"] is None and returned["weights"]["stage"] == plan.stages[-1].name
    check_back(out, plan.limits)
    run_script("scripts/gpu_plan.py", "--state", str(state_path), "bring-back", str(out), "--runs",
               str(tmp_path / "runs"))
    folder = Path(load_state(state_path)["weights"]["folder"])
    from ldm.sampling.sampler import load_sampling_model

    model = load_sampling_model(folder, "cpu")
    assert model.is_student  # the last stage's student, whole again (a smaller one: its own widths)
    assert list(model.pipe.unet.config.block_out_channels) == [16, 32]


def test_the_script_shows_the_next_stage_and_refuses_bad_values_in_one_line(tmp_path):
    shown = run_script("scripts/gpu_plan.py", "show").stdout
    stage = load_plan().stage(load_state()["next_stage"])
    assert f"next stage: {stage.name}" in shown and "scripts/train_unet.py" in shown
    bad = run_script("scripts/gpu_plan.py", "run", "--out", str(tmp_path), "--max-steps", "0", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--max-steps" in bad.stderr
    (tmp_path / "state.json").write_text('{"next_stage": "nowhere", "weights": null, "figures": {}, "runs": []}')
    bad = run_script("scripts/gpu_plan.py", "--state", str(tmp_path / "state.json"), "show", check=False)
    assert bad.returncode == 2 and "does not have" in bad.stderr and bad.stderr.strip().count("\n") == 0


def test_the_call_size_counts_the_tree_on_disk_and_the_carry(tmp_path):
    import subprocess
    from dataclasses import replace

    from benchmarks.gpu_pack import call_size

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/.gpu/\n")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "unet.bin").write_bytes(b"\0" * (3 * 2**20))
    (tmp_path / ".gpu" / "site").mkdir(parents=True)
    (tmp_path / ".gpu" / "site" / "enc.bin").write_bytes(b"\0" * 2**20)
    (tmp_path / ".gpu" / "font.ttf").write_bytes(b"\0" * 2**19)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    plan = load_plan()
    small = replace(plan, limits={**plan.limits, "carry_mib": 4})
    with pytest.raises(LdmError, match=r"send 4\.5 MiB, over the device tool's 4 MiB \(largest: tree weights 3\.0"):
        call_size(small, "teacher-r5a", tmp_path / ".gpu", tmp_path)
    (tmp_path / "weights" / "unet.bin").unlink()  # tracked but not on disk (a sparse checkout): not sent
    report = call_size(small, "teacher-r5a", tmp_path / ".gpu", tmp_path)
    assert report["carry"] == {"site": 2**20, "font.ttf": 2**19} and "weights" not in report["tree"]
    assert json.loads((tmp_path / ".gpu" / "pack.json").read_text()) == report


def _git(root, *args, check=True):
    import subprocess

    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root), *args], check=check,
                          capture_output=True, text=True)


def test_stow_keeps_the_weights_home_and_guards_commits_until_unstow(tmp_path):
    from dataclasses import replace

    from benchmarks.gpu_pack import call_size, tree_sizes
    from benchmarks.gpu_stow import is_stowed, stow, unstow

    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("/.gpu/\n")
    (tmp_path / "weights" / "emoji64").mkdir(parents=True)
    unet = tmp_path / "weights" / "emoji64" / "unet.bin"
    unet.write_bytes(b"\1" * (3 * 2**20))
    (tmp_path / "ldm.py").write_text("x = 1\n")
    (tmp_path / ".gpu").mkdir()
    (tmp_path / ".gpu" / "font.ttf").write_bytes(b"\0" * 2**19)
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    (tmp_path / ".git" / "info").mkdir(exist_ok=True)
    (tmp_path / ".git" / "info" / "exclude").write_text("/mine/")  # someone's own line, without a newline
    plan = load_plan()
    small = replace(plan, limits={**plan.limits, "carry_mib": 2})
    with pytest.raises(LdmError, match=r"stow keeps weights from travelling$"):
        call_size(small, "teacher-r5a", tmp_path / ".gpu", tmp_path)

    unet.write_bytes(b"\2" * 10)  # a change not committed is refused, and nothing is stowed
    with pytest.raises(LdmError, match="changes git has not committed"):
        stow(tmp_path)
    _git(tmp_path, "checkout", "--", "weights")
    (tmp_path / "weights" / "mine").mkdir()  # a folder of the user's own, untracked: no reason to refuse
    (tmp_path / "weights" / "mine" / "unet.bin").write_bytes(b"\3" * 10)
    assert stow(tmp_path) == ["weights"] and is_stowed(tmp_path)
    assert "weights" not in tree_sizes(tmp_path) and unet.stat().st_size == 3 * 2**20  # home, unchanged
    assert call_size(small, "teacher-r5a", tmp_path / ".gpu", tmp_path)["total_mib"] < 1
    (tmp_path / "ldm.py").write_text("x = 2\n")
    refused = _git(tmp_path, "commit", "-q", "-am", "would delete the weights", check=False)
    assert refused.returncode != 0 and "gpu_plan.py unstow" in refused.stderr
    with pytest.raises(LdmError, match="already stowed"):
        stow(tmp_path)

    assert unstow(tmp_path) == ["weights"] and not is_stowed(tmp_path)
    assert _git(tmp_path, "status", "--porcelain", "--", "weights").stdout == "?? weights/mine/\n"  # as before
    assert (tmp_path / ".git" / "info" / "exclude").read_text() == "/mine/\n"
    assert not (tmp_path / ".git" / "hooks" / "pre-commit").exists()
    assert tree_sizes(tmp_path)["weights"] == 3 * 2**20 + 10
    _git(tmp_path, "commit", "-q", "-am", "a commit again")  # the weights stay in the repository
    assert _git(tmp_path, "ls-files", "weights").stdout.strip() == "weights/emoji64/unet.bin"
    with pytest.raises(LdmError, match="nothing is stowed"):
        unstow(tmp_path)


def test_stow_leaves_someone_elses_commit_hook_alone(tmp_path):
    from benchmarks.gpu_stow import is_stowed, stow

    _git(tmp_path, "init", "-q")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.bin").write_bytes(b"1")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    hook = tmp_path / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(LdmError, match="pre-commit exists"):
        stow(tmp_path)
    assert not is_stowed(tmp_path) and _git(tmp_path, "ls-files").stdout.strip() == "weights/a.bin"


def test_a_carry_too_big_for_one_call_goes_ahead_in_part_calls_and_is_joined_there(tmp_path):
    import subprocess
    from dataclasses import replace

    from benchmarks.gpu_pack import call_size
    from benchmarks.gpu_parts import PARTS_FILE, sha256, split

    root = tmp_path / "here"
    root.mkdir()
    _git(root, "init", "-q")
    (root / ".gitignore").write_text("/.gpu/\n/.gpu-part*/\n/.gpu-kept/\n")
    dest = root / ".gpu"
    (dest / "init" / "unet").mkdir(parents=True)
    files = {"init/unet/unet.safetensors": 3 * 2**20, "site/enc.bin": 2**20 + 7, "font.ttf": 2**19, "w/a.whl": 999}
    for name, size in files.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    digests = {name: sha256(dest / name) for name in files}
    with pytest.raises(LdmError, match=r"init/unet/unet.safetensors \(3\.0 MiB\) is larger than a call can carry"):
        split(dest, 2 * 2**20)
    assert [p.name for p in split(dest, int(3.2 * 2**20))] == [".gpu-part1"]  # the UNet goes ahead, the rest stays
    assert not (dest / "init/unet/unet.safetensors").exists() and (root / ".gpu-part1/init/unet").is_dir()
    plan = load_plan()
    report = call_size(replace(plan, limits={**plan.limits, "carry_mib": 4}), "teacher-r5b", dest, root)
    assert [c["carry"] for c in report["calls"]] == [".gpu-part1", ".gpu"]
    assert all(c["total_mib"] <= 4 for c in report["calls"])

    def machine(name):  # a fresh copy of what the calls send: the tree, then each call's carried folder
        there = tmp_path / name
        shutil.copytree(root, there, ignore=shutil.ignore_patterns(".gpu*"))
        return there

    there = machine("warm")
    for part in (".gpu-part1",):
        shutil.copytree(root / part, there / part)
        subprocess.run(["bash", str(ROOT / "plans/gpu_part.sh"), part], cwd=there, check=True, capture_output=True)
        shutil.rmtree(there / part)  # the next call does not carry it
    shutil.copytree(dest, there / ".gpu")
    joined = subprocess.run([sys.executable, "-m", "benchmarks.gpu_parts", str(there / ".gpu"),
                             str(there / ".gpu-kept")], cwd=ROOT, capture_output=True, text=True)
    assert joined.returncode == 0 and "joined 1 files" in joined.stdout, joined.stderr
    assert {name: sha256(there / ".gpu" / name) for name in files} == digests
    assert (there / ".gpu" / PARTS_FILE).is_file()  # a second join finds everything in place
    assert subprocess.run([sys.executable, "-m", "benchmarks.gpu_parts", str(there / ".gpu")], cwd=ROOT,
                          capture_output=True).returncode == 0

    cold = machine("cold")  # given back between the calls: the part's files are gone
    shutil.copytree(dest, cold / ".gpu")
    lost = subprocess.run([sys.executable, "-m", "benchmarks.gpu_parts", str(cold / ".gpu"), str(cold / ".gpu-kept")],
                          cwd=ROOT, capture_output=True, text=True)
    assert lost.returncode == 1 and lost.stderr.count("\n") == 1 and "make the part calls again" in lost.stderr
    (cold / ".gpu-kept/init/unet").mkdir(parents=True)
    (cold / ".gpu-kept/init/unet/unet.safetensors").write_bytes(b"half")
    changed = subprocess.run([sys.executable, "-m", "benchmarks.gpu_parts", str(cold / ".gpu"),
                              str(cold / ".gpu-kept")], cwd=ROOT, capture_output=True, text=True)
    assert changed.returncode == 1 and "arrived changed" in changed.stderr


def test_a_pack_that_fits_one_call_is_not_split(tmp_path):
    from benchmarks.gpu_parts import PARTS_FILE, split

    dest = tmp_path / ".gpu"
    dest.mkdir()
    (dest / "a.bin").write_bytes(b"1" * 1000)
    assert split(dest, 1000) == [] and not (dest / PARTS_FILE).exists() and (dest / "a.bin").is_file()
