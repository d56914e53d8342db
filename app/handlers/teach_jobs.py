"""A server's one teach job: scripts/teach.py in a worker process at lower priority, its run folder read for
progress, loss and previews, Stop as Ctrl-C, and the runs a restart finds (finished, or resumable).

The web UI does not import ldm.train (pyproject's contract): the worker runs the same command a user would, so a
run started here is an ordinary teach run folder (checkpoints, TensorBoard logs under logs/, previews under
samples/, the result and its card at the end), resumable with `scripts/teach.py ... --resume` too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ldm.errors import LdmError
from ldm.io import write_text_atomic
from ldm.processes import take_ctrl_c
from ldm.sampling.concepts import EMBEDDING_FILE, LORA_FILE

TEACH_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "teach.py"
JOBS_DIR = ".jobs"  # inside the teach folder: each job's copied images, its settings and the worker's output
CARD_FILE = "README.md"  # written last by a finished run (with teach.json), beside the result file
RESULTS = (LORA_FILE, EMBEDDING_FILE, CARD_FILE, "teach.json")
NICE = 10  # the worker's priority below the server's: requests stay responsive while it trains
EARLY_EXIT_S = 3.0  # Start waits this long for the worker's argument checks (they fail in a fraction of a second)
MAX_TEACH_STEPS = 1000  # the default budget: steps one teach job may ask for (the method configs' default is 300)


def _worker_start() -> None:
    # in the worker before it runs: below the server's priority, and Stop's SIGINT reaches it even when the server
    # was started in the background (its SIGINT ignored, which children inherit)
    os.nice(NICE)
    take_ctrl_c()


@dataclass
class Progress:
    """What a run folder says about its run: steps done, loss points, the newest preview grid, the result."""

    done: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds_per_step: float | None = None
    preview: Path | None = None
    files: list[Path] = field(default_factory=list)


def result_files(out: Path) -> list[Path]:
    """A finished run's files (its LoRA or embedding, and the card), or [] while any is missing."""
    present = [out / name for name in RESULTS if (out / name).is_file()]
    has_result = any(p.name in (LORA_FILE, EMBEDDING_FILE) for p in present)
    return present if has_result and (out / CARD_FILE).is_file() and (out / "teach.json").is_file() else []


def has_checkpoint(out: Path) -> bool:
    """Whether a run folder holds a checkpoint that --resume can continue from."""
    # checkpoints/unet/checkpoint-N, as teach.py's --resume looks for them (an unfinished save has another name)
    return any(p.is_dir() for p in (out / "checkpoints" / "unet").glob("checkpoint-*"))


def loss_points(out: Path) -> tuple[list[tuple[int, float]], float | None]:
    """The run's logged (step, loss) points from its TensorBoard logs, and the seconds per step between the first
    and the last of them (None with fewer than two)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    by_step: dict[int, tuple[float, float]] = {}
    for folder in sorted({p.parent for p in (out / "logs").glob("**/events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if "loss" in acc.Tags().get("scalars", []):
            for e in acc.Scalars("loss"):
                by_step[e.step] = (e.value, e.wall_time)  # a resumed run logs its steps again: the newest wins
    steps = sorted(by_step)
    rate = None
    if len(steps) > 1:
        # the newest stretch of one process's steps: a resume's pause would stretch a rate over the whole run
        first = max(len(steps) - 5, 0)
        (a, b) = steps[first], steps[-1]
        rate = max(by_step[b][1] - by_step[a][1], 0.0) / (b - a)
    return [(s, by_step[s][0]) for s in steps], rate


def read_progress(out: Path) -> Progress:
    """A run folder's progress as its files say (nothing there yet: an empty Progress)."""
    losses, rate = loss_points(out) if (out / "logs").is_dir() else ([], None)
    previews = sorted((out / "samples").glob("unet-*.png"))
    done = max([losses[-1][0] if losses else 0] + [int(p.stem.split("-")[-1]) for p in previews])
    return Progress(done, losses, rate, previews[-1] if previews else None, result_files(out))


@dataclass
class Job:
    """One teach run this server started (or found on disk): its settings, worker and files."""

    name: str
    out: Path
    folder: Path  # the job's own folder under .jobs: images, job.json, worker.log
    method: str
    class_prompt: str
    steps: int
    proc: subprocess.Popen | None = None
    stopping: bool = False
    started: float = field(default_factory=time.time)

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    def running(self) -> bool:
        """Whether its worker is still at work."""
        return self.proc is not None and self.proc.poll() is None

    def error_line(self) -> str | None:
        """The worker's own one-line error (teach.py prints `error: ...`), if it wrote one."""
        if not self.log.is_file():
            return None
        lines = [line for line in self.log.read_text(errors="replace").replace("\r", "\n").splitlines()
                 if line.startswith("error: ")]
        return lines[-1].removeprefix("error: ") if lines else None


class TeachJobs:
    """A server's teach runs under one folder: at most one worker at a time, each run's folder named by its concept.

    `model` is the pipeline folder taught; `max_steps` the budget of one job; `extra` more teach.py arguments
    (a test's small settings, `--set KEY=VALUE`); `downloads` the folder of the copies the page may fetch (default:
    a new temporary folder).
    """

    def __init__(self, root: Path, model: str | Path, max_steps: int = MAX_TEACH_STEPS, extra: list[str] | None = None,
                 downloads: Path | None = None):
        self.root = Path(root)
        # the page fetches copies from here, never from the teach folder: that holds the users' uploads, their
        # training views, checkpoints and logs, none of which a web route may reach
        self.downloads = Path(downloads or tempfile.mkdtemp(prefix="ldm-teach-downloads-"))
        self._own_downloads = downloads is None
        self.model = str(model)
        self.max_steps = max_steps
        self.extra = list(extra or [])
        self.jobs: dict[Path, Job] = {}  # by run folder
        self.current: Job | None = None  # the job the tab shows: the running one, else the last one started
        self.embedded: set[Path] = set()  # finished runs whose embedding the server's models hold
        self._lock = threading.Lock()  # two Start clicks at once: one starts, the other is refused
        for job in self._saved_jobs():  # a restarted server shows the last run, and resumes a stopped one
            self.jobs[job.out] = self.current = job

    def _saved_jobs(self) -> list[Job]:
        jobs = []
        for settings in sorted((self.root / JOBS_DIR).glob("*/job.json"), key=lambda p: p.stat().st_mtime):
            try:
                s = json.loads(settings.read_text())
                jobs.append(Job(s["name"], self.root / s["name"], settings.parent, s["method"], s["class_prompt"],
                                int(s["steps"]), started=settings.stat().st_mtime))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a job folder left half-made by a crash: nothing to resume from it
        return jobs

    def running(self) -> bool:
        """Whether a job's worker is at work (at most one is)."""
        return any(job.running() for job in self.jobs.values())

    def finished(self) -> list[Job]:
        """The runs whose result and card are complete, oldest first."""
        return [job for job in self.jobs.values() if not job.running() and result_files(job.out)]

    def resumable(self, name: str) -> Job | None:
        """The stopped or broken run of that name that has a checkpoint and no result, else None."""
        job = self.jobs.get(self.root / name)
        if job is None or job.running() or result_files(job.out) or not has_checkpoint(job.out):
            return None
        return job

    def start(self, images: list[tuple[str, str]], name: str, class_prompt: str, method: str, steps: int) -> Job:
        """Start teaching `name` from (path, shown name) images in a worker, or resume that name's stopped run.

        Refused in one line while another job runs, beyond the step budget, or when the worker's own checks
        refuse the arguments (they run before it loads anything, so Start reports them).
        """
        if steps > self.max_steps:
            raise LdmError(f"{steps} steps is over this server's teach budget of {self.max_steps} "
                           "(the server's --max-teach-steps)")
        with self._lock:
            running = next((job for job in self.jobs.values() if job.running()), None)
            if running is not None:
                raise LdmError(f"a teach job is running already ({running.name!r}): one at a time on this server; "
                               "Stop it or wait for it to end")
            name = name.strip()
            resume = self.resumable(name) if name else None
            job = resume or self._new_job(images, name, class_prompt, method, steps)
            try:
                self._launch(job, resume is not None)
            except LdmError:
                if resume is None:
                    shutil.rmtree(job.folder, ignore_errors=True)
                    self.jobs.pop(job.out, None)
                raise
            self.current = job
            return job

    def _new_job(self, images: list[tuple[str, str]], name: str, class_prompt: str, method: str, steps: int) -> Job:
        if not images:
            raise LdmError("no images: drop 1-50 pictures of the concept first")
        folder = self.root / JOBS_DIR / uuid.uuid4().hex[:10]
        (folder / "images").mkdir(parents=True)
        # the worker reads copies: the server's upload copies are deleted after a while, and a resume needs them
        for k, (path, shown) in enumerate(images):  # by the user's names, so that an error names their file
            copy = folder / "images" / Path(shown).name
            shutil.copyfile(path, copy if not copy.exists() else copy.with_name(f"{k:02d}-{copy.name}"))
        job = Job(name, self.root / name if name else self.root / folder.name, folder, method, class_prompt.strip(),
                  steps)
        try:
            taken = job.out.exists()
        except OSError:  # a name too long for a folder: the worker's own check says so in one line
            taken = False
        if taken:
            shutil.rmtree(folder, ignore_errors=True)
            raise LdmError(f"a concept named {name!r} was taught here already: pick another name")
        return job

    def _launch(self, job: Job, resume: bool) -> None:
        args = [sys.executable, str(TEACH_SCRIPT), str(job.folder / "images"), "--name", job.name, "--out",
                str(job.out), "--method", job.method, "--class", job.class_prompt, "--steps", str(job.steps),
                "--model", self.model, *self.extra, *(["--resume"] if resume else [])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TEACH_SCRIPT.parents[1]),
                                                                         os.environ.get("PYTHONPATH")]))}
        with open(job.log, "ab") as log:
            job.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=_worker_start)
        job.stopping, job.started = False, time.time()
        try:
            job.proc.wait(EARLY_EXIT_S)
        except subprocess.TimeoutExpired:
            pass
        if job.proc.returncode not in (None, 0):
            raise LdmError(job.error_line() or f"the teach worker ended at once (exit code {job.proc.returncode})")
        if not resume:
            write_text_atomic(job.folder / "job.json", json.dumps(
                {"name": job.name, "method": job.method, "class_prompt": job.class_prompt, "steps": job.steps}))
        self.jobs[job.out] = job

    def offer(self, job: Job, path: Path) -> str:
        """A copy of one of a run's files (a preview, the result, the card) for the page to show or download,
        refreshed when the file changed."""
        copy = self.downloads / job.out.name / path.name
        done = copy.stat() if copy.is_file() else None
        now = path.stat()
        if done is None or (done.st_size, done.st_mtime_ns) != (now.st_size, now.st_mtime_ns):
            copy.parent.mkdir(parents=True, exist_ok=True)
            part = copy.with_name(f"{copy.name}.part")
            shutil.copy2(path, part)  # keeps the modification time compared above
            part.replace(copy)  # a page fetching it meanwhile gets the old copy or the new one, whole
        return str(copy)

    def stop(self) -> Job:
        """Stop the running job: Ctrl-C first (the run saves its step as a checkpoint), a second Stop ends it at
        once (it then resumes from its last checkpoint)."""
        job = self.current
        if job is None or not job.running():
            raise LdmError("no teach job is running")
        if job.stopping:
            job.proc.terminate()
        else:
            job.proc.send_signal(signal.SIGINT)
            job.stopping = True
        return job

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """At server exit: a running worker saves its step (as after Stop), so that the next server resumes it."""
        for job in self.jobs.values():
            if job.running():
                job.proc.send_signal(signal.SIGINT)
                try:
                    job.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    job.proc.kill()
        if self._own_downloads:
            shutil.rmtree(self.downloads, ignore_errors=True)
