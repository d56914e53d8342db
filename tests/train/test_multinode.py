"""Two nodes on one machine, and a node that dies: `accelerate launch --num_machines 2`, one launcher per node.

Each launcher starts one process; together they form one gloo group over loopback, as two machines would
over a network (a shared folder stands in for the shared file system multi-node runs need).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from support import ROOT, TINY, same_state

pytestmark = pytest.mark.slow

STEPS = ["train_unet.max_steps=30", "train_unet.checkpoint_every=10", "train_unet.batch_size=8",
         "train_unet.checkpoints_total_limit=2", "data.shapes_count=64"]
# Long enough for a slow, busy CI machine to finish a 30-step tiny run; a rank stuck on a collective with a
# dead peer would wait far longer (gloo's default timeout is 30 minutes).
RUN_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(rank: int, port: int, out, vae, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
           "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
           "tests/helpers/patched_train.py", "--config", str(TINY), "--output-dir", str(out), "--vae", str(vae),
           *STEPS, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})})


def _two_nodes(out, vae, *extra: str, env_node1: dict | None = None) -> list[tuple[int, str, float]]:
    """Run both nodes to the end; each node's (exit code, output, seconds from start to exit)."""
    port = _free_port()
    start = time.monotonic()
    nodes = [_launch(0, port, out, vae, *extra), _launch(1, port, out, vae, *extra, env=env_node1)]
    results = []
    for node in nodes:
        try:
            text, _ = node.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            pytest.fail(f"a node did not exit within {RUN_TIMEOUT_S} s (hung on a collective?)")
        results.append((node.returncode, text, time.monotonic() - start))
    return results


def _unet(folder):
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def two_node_reference(tiny_run, tmp_path_factory):
    """An uninterrupted 30-step run on two nodes."""
    out = tmp_path_factory.mktemp("two_nodes")
    results = _two_nodes(out, tiny_run / "vae")
    for code, text, _ in results:
        assert code == 0, text[-3000:]
    return out, results


def test_two_nodes_train_and_checkpoint(two_node_reference):
    out, results = two_node_reference
    text = results[0][1]
    assert "x 2 processes" in text
    assert sum(t.count("result ->") for _, t, _ in results) == 1  # only the global main process writes the model
    names = sorted(p.name for p in (out / "checkpoints" / "unet").iterdir())
    assert names == ["checkpoint-20", "checkpoint-30"]
    for rank in (0, 1):  # each node's process keeps its own random states
        assert (out / "checkpoints" / "unet" / "checkpoint-30" / f"random_states_{rank}.safetensors").is_file()
    assert (out / "model_index.json").is_file()


def test_a_killed_node_ends_the_run_and_resume_is_exact(tiny_run, two_node_reference, tmp_path):
    reference, _ = two_node_reference
    # node 1's process is SIGKILLed at its 25th step: node 0 must not wait for it on the next collective
    killed = _two_nodes(tmp_path, tiny_run / "vae", env_node1={"LDM_TEST_KILL_AT": "25"})
    assert killed[0][0] != 0 and killed[1][0] != 0
    # node 0's process says so in one line (its launcher, torchrun, adds its own report of the failed child)
    assert "error: a process of this distributed run was lost" in killed[0][1], killed[0][1][-3000:]
    assert "[rank0]: Traceback" not in killed[0][1], killed[0][1][-3000:]
    names = sorted(p.name for p in (tmp_path / "checkpoints" / "unet").iterdir() if not p.name.startswith("."))
    assert names == ["checkpoint-10", "checkpoint-20"]
    assert not (tmp_path / "unet").exists()  # no result written from a broken run

    resumed = _two_nodes(tmp_path, tiny_run / "vae", "--resume", "latest")
    for code, text, _ in resumed:
        assert code == 0, text[-3000:]
    assert "resumed from step 20" in resumed[0][1]
    ck = "checkpoints/unet/checkpoint-30/model.safetensors"
    assert same_state(load_file(str(reference / ck)), load_file(str(tmp_path / ck)))
    assert same_state(_unet(reference), _unet(tmp_path))
