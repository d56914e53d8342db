"""Run scripts/train_unet.py with faults injected, to test recovery from real crashes.

LDM_TEST_NAN_AT=3,5   make the loss of these micro-batch calls (0-based) NaN ('all': every call)
LDM_TEST_KILL_AT=N    SIGKILL this process at the N-th loss call (mid-training)
LDM_TEST_CTRL_C_AT=N  send this process SIGINT (Ctrl-C) at the N-th loss call
LDM_TEST_KILL_SAVE=S  SIGKILL this process while checkpoint-S is being written (after the state files)
LDM_TEST_MIN_PEFT=V   make transformers ask for peft >= V (an installed peft too old for text-encoder LoRA)
"""

import os
import runpy
import signal
import sys

import ldm.cli  # noqa: F401  first, as in the real script: it quiets the libraries' import-time notices
import ldm.train.checkpoints as checkpoints
import ldm.train.loop as loop
import ldm.train.unet as unet_train

calls = {"n": 0}
nan_at = os.environ.get("LDM_TEST_NAN_AT", "")
kill_at = int(os.environ.get("LDM_TEST_KILL_AT", "-1"))
kill_save = int(os.environ.get("LDM_TEST_KILL_SAVE", "-1"))
ctrl_c_at = int(os.environ.get("LDM_TEST_CTRL_C_AT", "-1"))
original_prepare = unet_train.prepare_training
original_save = checkpoints.save_checkpoint


def faulty_prepare(*args, **kwargs):
    run = original_prepare(*args, **kwargs)
    original_loss = run.loss  # the target's loss, whatever kind of run

    def faulty_loss(*args, **kwargs):
        n = calls["n"]
        calls["n"] += 1
        if n == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if n == ctrl_c_at:
            os.kill(os.getpid(), signal.SIGINT)
        loss = original_loss(*args, **kwargs)
        if nan_at == "all" or str(n) in nan_at.split(","):
            loss = loss * float("nan")
        return loss

    run.loss = faulty_loss
    return run


def crashing_save(accelerator, root, step, cfg, limit, state, extra_save=None):
    if step != kill_save:
        return original_save(accelerator, root, step, cfg, limit, state, extra_save)

    def die(folder):
        if extra_save is not None:
            extra_save(folder)
        os.kill(os.getpid(), signal.SIGKILL)

    return original_save(accelerator, root, step, cfg, limit, state, die)


if os.environ.get("LDM_TEST_MIN_PEFT"):
    import transformers.integrations.peft as transformers_peft

    transformers_peft.MIN_PEFT_VERSION = os.environ["LDM_TEST_MIN_PEFT"]
unet_train.prepare_training = faulty_prepare
loop.save_checkpoint = crashing_save
sys.argv = ["train_unet.py", *sys.argv[1:]]
runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "train_unet.py"), run_name="__main__")
