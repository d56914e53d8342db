"""Crashes and bad numbers: SIGKILL mid-training and mid-save, Ctrl-C, NaN steps, resume semantics, no pickles."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from support import ROOT, TINY, no_model_libraries, planted_pickle, run_script

from ldm.train.checkpoints import list_checkpoints
from ldm.train.state_files import load_state

FAST = ["train_unet.max_steps=30", "train_unet.checkpoint_every=10", "train_unet.batch_size=8",
        "train_unet.checkpoints_total_limit=2", "train_unet.log_every=5", "data.shapes_count=64"]


def _train(out, vae, *extra, env=None, check=True):
    args = ["tests/helpers/patched_train.py", "--config", str(TINY), "--output-dir", str(out), "--vae", str(vae),
            *FAST, *extra]
    return run_script(*args, env=env, check=check)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tiny_run, tmp_path_factory):
    """An uninterrupted 30-step run."""
    out = tmp_path_factory.mktemp("reference")
    _train(out, tiny_run / "vae")
    return out


def _final(out):
    return load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))


def test_uninterrupted_run_keeps_the_newest_checkpoints(reference):
    names = sorted(p.name for p in (reference / "checkpoints" / "unet").iterdir())
    assert names == ["checkpoint-20", "checkpoint-30"]
    assert (reference / "checkpoints" / "unet" / "checkpoint-30" / "unet_ema").is_dir()
    assert (reference / "checkpoints" / "unet" / "checkpoint-30" / "config.yaml").is_file()


def test_sigkill_mid_training_then_resume_matches(tiny_run, reference, tmp_path):
    killed = _train(tmp_path, tiny_run / "vae", env={"LDM_TEST_KILL_AT": "25"}, check=False)
    assert killed.returncode != 0
    resumed = _train(tmp_path, tiny_run / "vae", "--resume", "latest")
    assert "resumed from step 20" in resumed.stderr + resumed.stdout
    ck = "checkpoints/unet/checkpoint-30"
    _assert_same(_weights(reference / ck), _weights(tmp_path / ck))
    _assert_same(_final(reference), _final(tmp_path))


def test_sigkill_while_saving_keeps_the_previous_checkpoint(tiny_run, reference, tmp_path):
    killed = _train(tmp_path, tiny_run / "vae", env={"LDM_TEST_KILL_SAVE": "20"}, check=False)
    assert killed.returncode != 0
    root = tmp_path / "checkpoints" / "unet"
    assert (root / "checkpoint-10").is_dir() and not (root / "checkpoint-20").exists()
    resumed = _train(tmp_path, tiny_run / "vae", "--resume", "latest")
    assert "resumed from step 10" in resumed.stderr + resumed.stdout
    _assert_same(_final(reference), _final(tmp_path))
    assert not list(root.glob(".tmp-*"))


def test_ctrl_c_saves_the_finished_step_and_the_resume_matches(tiny_run, reference, tmp_path):
    stopped = _train(tmp_path, tiny_run / "vae", env={"LDM_TEST_CTRL_C_AT": "24"}, check=False)
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr
    assert "interrupted after step 25" in stopped.stderr
    root = tmp_path / "checkpoints" / "unet"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-20", "checkpoint-25"]
    assert not (tmp_path / "unet").exists()  # no result from a run that did not finish
    resumed = _train(tmp_path, tiny_run / "vae", "--resume", "latest")
    assert "resumed from step 25" in resumed.stderr + resumed.stdout
    _assert_same(_final(reference), _final(tmp_path))


@pytest.mark.slow  # a training run in a subprocess
def test_ctrl_c_to_a_vae_run_and_its_data_workers_saves_and_resumes(tmp_path):
    # Ctrl-C in a terminal reaches the whole process group: the DataLoader's worker too, which must not die
    args = [sys.executable, "scripts/train_vae.py", "--config", str(TINY), "--output-dir", str(tmp_path),
            "train_vae.max_steps=2000", "train_vae.checkpoint_every=5", "train_vae.eval_every=2000",
            "data.num_workers=1", "data.shapes_count=64"]
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = []
    for line in proc.stderr:  # the first checkpoint says the steps are running
        lines.append(line)
        if "step 5: checkpoint" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    lines += proc.stderr.readlines()
    stderr = "".join(lines)
    assert proc.wait(timeout=600) == 130 and "Traceback" not in stderr, stderr
    stopped = max(step for step, _ in list_checkpoints(tmp_path / "checkpoints" / "vae"))
    # after the step in hand: step 5's own, when Ctrl-C came before the loop looked (just after that log line)
    assert stopped >= 5 and f"interrupted after step {stopped}" in stderr
    resumed = run_script("scripts/train_vae.py", "--config", str(TINY), "--output-dir", str(tmp_path), "--resume",
                         "latest", f"train_vae.max_steps={stopped + 2}", "train_vae.checkpoint_every=5",
                         "data.num_workers=1", "data.shapes_count=64", "train_vae.scaling_samples=16")
    assert f"resumed from step {stopped}" in resumed.stderr + resumed.stdout
    assert (tmp_path / "vae" / "config.json").is_file()


def test_nan_step_leaves_weights_ema_and_optimizer_untouched(tiny_run, tmp_path):
    clean, poisoned = tmp_path / "clean", tmp_path / "poisoned"
    _train(clean, tiny_run / "vae", "train_unet.max_steps=3", "train_unet.checkpoint_every=3")
    run = _train(poisoned, tiny_run / "vae", "train_unet.max_steps=4", "train_unet.checkpoint_every=4",
                 env={"LDM_TEST_NAN_AT": "3"})
    assert "non-finite loss" in run.stderr + run.stdout
    a, b = clean / "checkpoints/unet/checkpoint-3", poisoned / "checkpoints/unet/checkpoint-4"
    _assert_same(_weights(a), _weights(b))
    _assert_same(load_file(str(a / "unet_ema/diffusion_pytorch_model.safetensors")),
                 load_file(str(b / "unet_ema/diffusion_pytorch_model.safetensors")))
    opt_a, opt_b = load_state(a / "optimizer.safetensors"), load_state(b / "optimizer.safetensors")
    for key, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][key][name]), (key, name)


def test_persistent_nan_aborts_with_one_line_and_writes_nothing(tiny_run, tmp_path):
    run = _train(tmp_path, tiny_run / "vae", env={"LDM_TEST_NAN_AT": "all"}, check=False)
    assert run.returncode == 2
    assert "error: training diverged" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "checkpoints" / "unet").exists() or not any((tmp_path / "checkpoints" / "unet").iterdir())
    assert not (tmp_path / "unet").exists()


def test_resume_latest_without_checkpoint_starts_fresh_and_bad_path_errors(tiny_run, tmp_path):
    run = _train(tmp_path / "a", tiny_run / "vae", "train_unet.max_steps=2", "--resume", "latest")
    assert "starting fresh" in run.stderr + run.stdout
    bad = _train(tmp_path / "b", tiny_run / "vae", "--resume", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2 and "checkpoint not found" in bad.stderr and "Traceback" not in bad.stderr


def test_missing_vae_is_a_one_line_error(tmp_path):
    libs = no_model_libraries(tmp_path / "libs")  # answered before torch loads
    run = run_script("scripts/train_unet.py", "--config", str(TINY), "--output-dir", str(tmp_path / "run"),
                     check=False, env=libs)
    assert run.returncode == 2 and "train one first" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "run").exists()
    run = run_script("scripts/train_unet.py", "--config", str(TINY), "--output-dir", str(tmp_path / "run"),
                     "--vae", str(tmp_path / "nowhere"), check=False, env=libs)
    assert run.returncode == 2 and "VAE folder not found" in run.stderr and "Traceback" not in run.stderr


def test_checkpoint_folder_holds_no_pickle(reference):
    folder = reference / "checkpoints" / "unet" / "checkpoint-30"
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".yaml"}, suffixes


def test_planted_pickles_are_never_executed_on_resume(tiny_run, reference, tmp_path):
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "unet" / "checkpoint-20"
    shutil.copytree(reference / "checkpoints" / "unet" / "checkpoint-20", checkpoint)
    marker = tmp_path / "executed"
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "scaler.pt", "pytorch_model.bin",
                 "unet_ema/diffusion_pytorch_model.bin", "custom_checkpoint_0.pkl"):
        (checkpoint / name).write_bytes(planted_pickle(marker))
    resumed = _train(run, tiny_run / "vae", "--resume", "latest")
    assert "resumed from step 20" in resumed.stderr + resumed.stdout
    assert not marker.exists()
    _assert_same(_final(reference), _final(run))  # and the resume is still exact


@pytest.mark.parametrize("script", ["train_unet", "train_vae"])
def test_bad_resume_is_refused_before_anything_is_created(tmp_path, script):
    libs = no_model_libraries(tmp_path / "libs")  # answered before torch loads: no cache, no logs/
    (tmp_path / "vae").mkdir()
    out = tmp_path / "run"
    args = [f"scripts/{script}.py", "--config", str(TINY), "--output-dir", str(out)]
    if script == "train_unet":
        args += ["--vae", str(tmp_path / "vae")]
    missing = run_script(*args, "--resume", str(tmp_path / "missing"), env=libs, check=False)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr and not out.exists()

    # a checkpoint of an older ldm (Accelerate's pickles): refused in one line, its pickle never loaded
    kind = "unet" if script == "train_unet" else "vae"
    old = out / "checkpoints" / kind / "checkpoint-10"
    old.mkdir(parents=True)
    (old / "ldm_state.json").write_text('{"step": 10}')
    marker = tmp_path / "executed"
    (old / "random_states_0.pkl").write_bytes(planted_pickle(marker))
    refused = run_script(*args, "--resume", "latest", env=libs, check=False)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1 and "--trust-pickle-checkpoint" in lines[0], refused.stderr
    assert not marker.exists() and not (out / "logs").exists()


@pytest.mark.parametrize("script", ["scripts/train_vae.py", "scripts/train_unet.py"])
def test_refused_data_leaves_no_run_folder(tiny_run, tmp_path, script):
    # the TensorBoard log opens only once the data is accepted: a typo in --data leaves nothing behind
    (tmp_path / "empty").mkdir()
    run = run_script(script, "--config", str(TINY), "--output-dir", str(tmp_path / "run"), "--data",
                     str(tmp_path / "empty"), *(["--vae", str(tiny_run / "vae")] if "unet" in script else []),
                     check=False)
    assert run.returncode == 2 and "no usable image" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "run").exists()
