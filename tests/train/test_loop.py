"""The frame every training run shares, on a toy model: checkpoints, logs and previews when due, resume, and
Ctrl-C, which lets the step finish, saves it, and leaves a run that resumes to the same weights."""

import os
import signal

import pytest
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from support import TINY

from ldm.config import load_config
from ldm.train.checkpoints import TrainingState, list_checkpoints
from ldm.train.loop import Run, StepResult
from ldm.train.runtime import CtrlC


@pytest.fixture
def accelerator():
    return Accelerator(cpu=True)


def _run(accelerator, out, max_steps: int = 6) -> Run:
    cfg = load_config(TINY, [f"train_unet.max_steps={max_steps}", "train_unet.checkpoint_every=4",
                             "train_unet.log_every=2", "train_unet.checkpoints_total_limit=3"])
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    schedule = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=1, num_training_steps=max_steps)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    state = TrainingState([model], optimizer, schedule)
    return Run(accelerator, cfg, cfg.train_unet, "unet", out, state)


def _step(run: Run, ctrl_c_at: int = -1, seen: list | None = None):
    """A step whose batch is a function of its index (as the trainers' are), sending Ctrl-C at `ctrl_c_at`."""
    model, optimizer, schedule = run.state.models[0], run.state.optimizer, run.state.lr_scheduler

    def step(index: int) -> StepResult:
        if index == ctrl_c_at:
            os.kill(os.getpid(), signal.SIGINT)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(index))
        loss = (model(x) - x.sum(1, keepdim=True)).square().mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if seen is not None:
            seen.append(index)
        return StepResult(True, 1.0, lambda: {"loss": float(loss.detach())})

    return step


def _weights(run: Run) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in run.state.models[0].parameters()])


def test_checkpoints_and_previews_come_when_due(accelerator, tmp_path):
    run, previews = _run(accelerator, tmp_path), []
    run.loop(0, _step(run), preview=previews.append, preview_every=4, preview_at_end=True)
    assert [step for step, _ in list_checkpoints(tmp_path / "checkpoints" / "unet")] == [4, 6]
    assert previews == [4, 6]
    previews.clear()
    run.loop(0, _step(run), preview=previews.append, preview_every=4)
    assert previews == [4]  # the UNet's previews: not again at the end


def test_ctrl_c_saves_the_finished_step_and_the_resume_is_exact(accelerator, tmp_path, caplog):
    reference = _run(accelerator, tmp_path / "reference")
    reference.loop(0, _step(reference))

    interrupted, seen = _run(accelerator, tmp_path / "run"), []
    with pytest.raises(KeyboardInterrupt):
        interrupted.loop(0, _step(interrupted, ctrl_c_at=4, seen=seen))
    assert seen == [0, 1, 2, 3, 4]  # the step in hand finished; none after it began
    root = tmp_path / "run" / "checkpoints" / "unet"
    assert [step for step, _ in list_checkpoints(root)] == [4, 5]
    assert "interrupted after step 5" in caplog.text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is the user's again

    resumed = _run(accelerator, tmp_path / "run")
    assert resumed.resume("latest") == 5
    resumed.loop(5, _step(resumed))
    assert torch.equal(_weights(resumed), _weights(reference))

    last = _run(accelerator, tmp_path / "last")
    last.loop(0, _step(last, ctrl_c_at=5))  # during the last step: the run ends as it would have, nothing raised
    assert [step for step, _ in list_checkpoints(tmp_path / "last" / "checkpoints" / "unet")] == [4, 6]
    assert torch.equal(_weights(last), _weights(reference))


def test_a_second_ctrl_c_stops_at_once():
    with CtrlC() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.pressed
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
