"""The GPU plan (issue 36): the plan's stages and state as data, and one call's run on a lent GPU machine.

A call runs, in order: the GPU figures not yet recorded, the next stage's training (stopped by SIGINT when its time
is up: the trainer saves the step in hand), its export in fp16, and what must come back, written under $OUT in
pieces the device tool returns. `bring_back` turns those pieces into a pipeline folder here and the new state.
The plan is plans/gpu_plan.yaml, its state plans/gpu_state.json; docs/gpu_plan.md says how a session runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ldm.errors import LdmError
from ldm.io import atomic_file, one_line, replace_folder, write_text_atomic
from ldm.processes import take_ctrl_c

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "plans" / "gpu_plan.yaml"
STATE = ROOT / "plans" / "gpu_state.json"
RELEASE = ROOT / "weights" / "emoji64"
MIB = 2**20
INIT_FROM = (None, "release", "previous")
PIECES = "pipeline.tar"  # the exported folder as pipeline.tar.0, .1, ...
STATE_OUT = "gpu_state.json"
LOG_OUT = "plan.log"


@dataclass(frozen=True)
class Figure:
    """One benchmark run whose output the plan records once."""

    name: str
    args: list[str]
    dry: list[str]


@dataclass(frozen=True)
class Stage:
    """One call of scripts/train_unet.py: its config, where it starts, its overrides and its estimated rate."""

    name: str
    what: str
    config: str
    dry_config: str
    init_from: str | None
    model: list[str]
    train: list[str]
    dry: list[str]
    steps_per_s: float


@dataclass(frozen=True)
class Plan:
    """plans/gpu_plan.yaml: the device's limits, a call's time budget, the figures and the stages in order."""

    limits: dict
    budget_s: float
    export_s: float
    data_s: float
    figures: list[Figure]
    stages: list[Stage]

    def stage(self, name: str | None) -> Stage | None:
        """The stage called `name`; None for None (the plan is done)."""
        if name is None:
            return None
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise LdmError(f"the state names stage {name!r}, which the plan does not have "
                       f"({', '.join(s.name for s in self.stages)})")

    def after(self, stage: Stage) -> str | None:
        """The name of the stage that follows `stage`; None after the last."""
        names = [s.name for s in self.stages]
        i = names.index(stage.name)
        return names[i + 1] if i + 1 < len(names) else None


def load_plan(path: str | Path = PLAN) -> Plan:
    """Read and check the plan; a missing key or a bad value is one line."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        figures = [Figure(f["name"], [str(a) for a in f["args"]], [str(a) for a in f["dry"]]) for f in raw["figures"]]
        stages = [Stage(s["name"], s["what"], s["config"], s["dry_config"], s["init_from"],
                        list(s["model"]), list(s["train"]), list(s["dry"]), float(s["steps_per_s"]))
                  for s in raw["stages"]]
        plan = Plan(dict(raw["limits"]), float(raw["budget_s"]), float(raw["export_s"]), float(raw["data_s"]),
                    figures, stages)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise LdmError(f"GPU plan {path}: unreadable ({type(exc).__name__}: {one_line(exc)})") from None
    for stage in stages:
        if stage.init_from not in INIT_FROM:
            raise LdmError(f"GPU plan stage {stage.name}: init_from must be one of {INIT_FROM}, "
                           f"got {stage.init_from!r}")
        if stage.steps_per_s <= 0:
            raise LdmError(f"GPU plan stage {stage.name}: steps_per_s must be positive")
    if stages and stages[0].init_from == "previous":
        raise LdmError(f"GPU plan: the first stage ({stages[0].name}) has no previous stage to start from")
    if plan.budget_s > plan.limits["command_s"]:
        raise LdmError(f"GPU plan: budget_s {plan.budget_s:g} is over one command's {plan.limits['command_s']} s")
    return plan


def load_state(path: str | Path = STATE) -> dict:
    """The plan's state: next_stage, weights (the last stage's folder here), figures recorded, runs."""
    try:
        state = json.loads(Path(path).read_text())
        for key in ("next_stage", "weights", "figures", "runs"):
            state[key]  # noqa: B018  every key present, or one line
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LdmError(f"GPU plan state {path}: unreadable ({type(exc).__name__}: {exc})") from None
    return state


def write_state(state: dict, path: str | Path = STATE) -> Path:
    """Write the state whole (small: committed with the repository)."""
    return write_text_atomic(path, json.dumps(state, indent=2, ensure_ascii=False) + "\n")


def steps_per_s(stage: Stage, state: dict) -> float:
    """The stage's rate: the last measured on a GPU for this stage, else the plan's estimate."""
    measured = [r["steps_per_s"] for r in state["runs"] if r.get("stage") == stage.name and r.get("steps_per_s")
                and r.get("device", "").startswith("cuda")]
    return measured[-1] if measured else stage.steps_per_s


def step_budget(rate: float, seconds: float) -> int:
    """--max-steps for `seconds` of training at `rate` steps/s (at least 1), so the LR schedule ends in time."""
    return max(1, int(rate * seconds))


def train_command(stage: Stage, out_dir: Path, max_steps: int, *, init: Path | None, data: Path | None,
                  dry: bool) -> list[str]:
    """scripts/train_unet.py's arguments for `stage`: a dry run trains the tiny size on the CPU's own data."""
    argv = [sys.executable, str(ROOT / "scripts" / "train_unet.py"),
            "--config", stage.dry_config if dry else stage.config, "--output-dir", str(out_dir),
            "--max-steps", str(max_steps)]
    if stage.init_from is None:
        argv += ["--vae", str(init / "vae")] if init else []
    else:
        argv += ["--init-from", str(init)]
    if data is not None and not dry:
        argv += ["--data", str(data)]
    overrides = stage.train + (stage.dry if dry else stage.model)
    return argv + overrides + ([f"train_unet.checkpoint_every={max_steps}"] if dry else [])


def child_env(device: str, site: Path | None) -> dict:
    """The environment of every child: the CPU alone in a CPU run; the carried packages first on the path."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    paths = [str(site)] if site else []
    env["PYTHONPATH"] = os.pathsep.join(paths + [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_until(argv: list[str], stop_at: float, env: dict, log, grace_s: float = 90.0) -> tuple[int, bool]:
    """Run `argv` (output to `log`); at `stop_at` (time.monotonic) send SIGINT, so a trainer saves its step and
    ends; after `grace_s` more, SIGKILL. A Ctrl-C or SIGTERM of ours is passed on the same way. (rc, stopped)."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, preexec_fn=take_ctrl_c)
    stopped, kill_at = False, None
    while child.poll() is None:
        try:
            if not stopped and time.monotonic() >= stop_at:
                raise KeyboardInterrupt
            if kill_at is not None and time.monotonic() >= kill_at:
                child.kill()
            time.sleep(0.5)
        except KeyboardInterrupt:
            if not stopped:
                stopped, kill_at = True, time.monotonic() + grace_s
                child.send_signal(signal.SIGINT)
                log.write(f"--- stopped by time (SIGINT) after {time.monotonic() - stop_at:+.0f} s\n")
    log.flush()
    return child.returncode, stopped


def run_figures(plan: Plan, state: dict, env: dict, log, *, device: str, dry: bool, stop_at: float) -> dict:
    """The figures not yet recorded, each as {device, seconds, rc, output}; none once the time is up."""
    recorded = {}
    for figure in plan.figures:
        if figure.name in state["figures"] or time.monotonic() >= stop_at:
            continue
        script, *args = figure.dry if dry else figure.args
        argv = [sys.executable, str(ROOT / script), *args] + (["--device", device] if args[0] == "train" else [])
        t0 = time.monotonic()
        log.write(f"$ {' '.join(argv)}\n")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT,
                                  timeout=max(1.0, stop_at - t0))
            rc, output = done.returncode, done.stdout + done.stderr[-2000:]
        except subprocess.TimeoutExpired as exc:
            rc, output = -1, f"stopped by time\n{exc.stdout or ''}"
        log.write(output + "\n")
        log.flush()
        if rc == 0:  # a failed figure is run again next time
            recorded[figure.name] = {"device": device, "seconds": round(time.monotonic() - t0, 1), "output": output}
    return recorded


def build_data(font: Path, folder: Path, env: dict, log) -> Path:
    """The emoji dataset rendered from the carried font (the device cannot install the font's package)."""
    argv = [sys.executable, str(ROOT / "scripts" / "build_emoji_dataset.py"), "--out", str(folder), "--font", str(font)]
    rc, _ = run_until(argv, float("inf"), env, log)
    if rc != 0:
        raise LdmError(f"building the emoji dataset from {font} failed (exit {rc}): see {LOG_OUT}")
    return folder


def export_stage(run_dir: Path, completed: bool, out: Path, env: dict, log) -> Path | None:
    """Export the run (its final folder, else its latest checkpoint's EMA weights) in fp16; None if it has none."""
    from ldm.train.checkpoints import checkpoint_root, list_checkpoints

    if completed and (run_dir / "model_index.json").is_file():
        source = ["--model", str(run_dir)]
    else:
        found = list_checkpoints(checkpoint_root(run_dir, "unet"))
        if not found:
            return None
        source = ["--checkpoint", str(found[-1][1])]
    argv = [sys.executable, str(ROOT / "scripts" / "export.py"), *source, "--out", str(out), "--dtype", "fp16",
            "--reference-encoder"]
    rc, _ = run_until(argv, float("inf"), env, log)
    return out if rc == 0 else None


def steps_done(run_dir: Path) -> int:
    """Optimizer steps the run's latest checkpoint holds (0: none)."""
    from ldm.train.checkpoints import checkpoint_root, list_checkpoints

    found = list_checkpoints(checkpoint_root(run_dir, "unet"))
    return found[-1][0] if found else 0


def pack_pieces(folder: Path, out: Path, piece_bytes: int) -> dict:
    """`folder` as a tar in pieces of at most `piece_bytes` under `out`."""
    tar_path = out / PIECES
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname="pipeline")
    data = tar_path.read_bytes()
    tar_path.unlink()
    names = []
    for i in range(0, len(data), piece_bytes):
        name = f"{PIECES}.{len(names)}"
        (out / name).write_bytes(data[i:i + piece_bytes])
        names.append(name)
    return {"pieces": names, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def check_back(out: Path, limits: dict) -> None:
    """What $OUT holds against the device tool's limits on what comes back; one line if over."""
    files = [p for p in out.rglob("*") if p.is_file()]
    sizes = [p.stat().st_size for p in files]
    if len(files) > limits["back_files"] or max(sizes, default=0) > limits["back_file_mib"] * MIB or \
            sum(sizes) > limits["back_total_mib"] * MIB:
        raise LdmError(f"$OUT holds {len(files)} files, {sum(sizes) / MIB:.1f} MiB, the largest "
                       f"{max(sizes, default=0) / MIB:.1f} MiB: over the {limits['back_files']} files, "
                       f"{limits['back_file_mib']} MiB each, {limits['back_total_mib']} MiB in all that come back")


def sigterm_as_ctrl_c() -> None:
    """SIGTERM (a machine's shutdown, the tool's limit) raises KeyboardInterrupt, as Ctrl-C does, so that a running
    stage is stopped, saved and exported and the state still written."""
    def _raise(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def run_plan(plan: Plan, state: dict, out: Path, work: Path, *, device: str, budget_s: float, dry: bool = False,
             max_steps: int | None = None, release: Path = RELEASE, previous: Path | None = None,
             data: Path | None = None, font: Path | None = None, site: Path | None = None, stages: int = 1) -> dict:
    """One call: the figures, then `stages` stages, each stopped in time and exported; $OUT written. The new state.

    `work` holds the runs; `previous` is the folder a stage with init_from 'previous' starts from (a later stage of
    the same call starts from the one before it); `font` builds the emoji dataset into `work` when `data` is None."""
    t0 = time.monotonic()
    deadline = t0 + budget_s
    state = json.loads(json.dumps(state))
    out.mkdir(parents=True, exist_ok=True)
    env = child_env(device, site)
    with open(out / LOG_OUT, "a", encoding="utf-8") as log:
        log.write(f"GPU plan: device {device}, budget {budget_s:.0f} s, next stage {state['next_stage']}\n")
        # the figures take what a stage leaves them: never the export's share
        try:
            state["figures"].update(run_figures(plan, state, env, log, device=device, dry=dry,
                                                stop_at=deadline - plan.export_s - plan.data_s))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM during the figures: no stage, but the state comes back
            log.write("--- interrupted during the figures: no stage this call\n")
            stages = 0
        if data is None and font is not None and not dry:
            data = build_data(font, work / "emoji64", env, log)
        exported = None
        for _ in range(stages):
            stage = plan.stage(state["next_stage"])
            left = deadline - time.monotonic() - plan.export_s
            if stage is None or left < 30:
                break
            init = {None: release, "release": release, "previous": previous}[stage.init_from]
            if init is None:
                raise LdmError(f"stage {stage.name} starts from the previous stage's weights: none were carried")
            rate = steps_per_s(stage, state)
            steps = max_steps or step_budget(rate, left)
            run_dir = work / stage.name
            t_stage = time.monotonic()
            rc, stopped = run_until(train_command(stage, run_dir, steps, init=init, data=data, dry=dry),
                                    deadline - plan.export_s, env, log)
            train_s = time.monotonic() - t_stage
            done = steps_done(run_dir) if not (rc == 0 and not stopped) else steps
            exported = export_stage(run_dir, rc == 0 and not stopped, work / f"{stage.name}-fp16", env, log)
            state["runs"].append({
                "stage": stage.name, "device": device, "steps": done, "max_steps": steps, "rc": rc,
                "stopped_by_time": stopped, "train_s": round(train_s, 1),
                "steps_per_s": round(done / train_s, 3) if done else None, "dry": dry,
                "exported": exported is not None,
            })
            if exported is None:
                break  # the stage stays next: the following call runs it again
            state["next_stage"] = plan.after(stage)
            state["weights"] = {"stage": stage.name, "steps": done}
            previous = exported
        if exported is not None:
            state["weights"].update(pack_pieces(exported, out, (plan.limits["back_file_mib"] - 1) * MIB))
    write_state(state, out / STATE_OUT)
    check_back(out, plan.limits)
    return state


def bring_back(returned: Path, runs: Path, state_path: Path = STATE) -> dict:
    """A call's $OUT -> the exported pipeline folder under `runs` and the state written to `state_path`. The new
    state."""
    state = load_state(returned / STATE_OUT)
    weights = state.get("weights") or {}
    if weights.get("pieces"):
        data = b"".join((returned / name).read_bytes() for name in weights["pieces"])
        if hashlib.sha256(data).hexdigest() != weights["sha256"]:
            raise LdmError(f"{returned}: the pieces of {PIECES} do not add up to what the run wrote (sha256)")
        final = runs / weights["stage"]
        tmp = runs / f".{weights['stage']}.tmp"
        tmp.mkdir(parents=True)
        with atomic_file(tmp / PIECES) as part:
            part.write_bytes(data)
        with tarfile.open(tmp / PIECES) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / PIECES).unlink()
        replace_folder(tmp / "pipeline", final)
        tmp.rmdir()
        state["weights"] = {k: v for k, v in weights.items() if k not in ("pieces", "bytes")}
        state["weights"]["folder"] = str(final)
    write_state(state, state_path)
    return state
