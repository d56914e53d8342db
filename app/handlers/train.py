"""The Train tab's handlers: teach the model a concept from dropped images in a worker, watch it, stop it, use it.

The job itself (the worker, its run folder) is app/handlers/teach_jobs.py's; here are what the tab's controls
send and show, and a finished run's result offered to the other tabs (the LoRA in Generate's picker, an
embedding's name in every prompt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.handlers.payloads import upload
from app.handlers.shared import TabHandlers
from app.handlers.teach_jobs import Job, TeachJobs, read_progress
from app.handlers.teach_map import TeachMap, note
from ldm.errors import LdmError
from ldm.sampling.concepts import EMBEDDING_FILE, LORA_FILE, load_embedding

METHODS = {"lora": "LoRA (DreamBooth, keeps the class as it was)", "ti": "Textual inversion (a new word only)"}
DEFAULT_STEPS = 300  # the method configs' own default (configs/teach_*.yaml)


@dataclass
class TeachStatus:
    """What the tab shows of the current job."""

    line: str  # progress with ETA, or how it ended
    losses: list[tuple[int, float]] = field(default_factory=list)
    preview: str | None = None
    files: list[str] = field(default_factory=list)
    running: bool = False
    name: str = ""
    map: str = ""  # SVG: the job's images and newest preview on the dataset's latent map


def eta(seconds: float | None) -> str:
    """A remaining time as '1 min 5 s' ('estimating' before the rate is known)."""
    if seconds is None:
        return "ETA: estimating"
    minutes, secs = divmod(round(seconds), 60)
    return f"ETA {minutes} min {secs} s" if minutes else f"ETA {secs} s"


class TrainHandlers(TabHandlers):
    """What the Train tab's controls do."""

    def __init__(self, shared):
        super().__init__(shared)
        self.map = TeachMap(shared)

    @property
    def jobs(self) -> TeachJobs:
        if self.shared.teach is None:
            raise LdmError("this server does not teach (it was started with --max-teach-steps 0)")
        return self.shared.teach

    def start(self, images: list | None, name: str, class_prompt: str = "", method: str = "lora",
              steps: int = DEFAULT_STEPS) -> TeachStatus:
        """Start teaching `name` from the dropped images (or resume that name's stopped run); the job's status."""
        if method not in METHODS:
            raise LdmError(f"unknown method {method!r}: {' or '.join(METHODS)}")
        if steps is None or int(steps) != steps or steps < 1:
            raise LdmError(f"steps must be a whole number of at least 1, got {steps}")
        files = [upload(item) for item in images or []]
        job = self.jobs.start([(path, shown) for path, shown in files if path], name or "", class_prompt or "",
                              method, int(steps))
        return self._status_of(job)

    def stop(self) -> TeachStatus:
        """Stop the running job (its step saved: Start with the same name resumes it); its status."""
        return self._status_of(self.jobs.stop())

    def status(self) -> TeachStatus:
        """The current job's status (after a page reload too: the job lives in the server), finished results
        offered to the other tabs."""
        jobs = self.jobs
        self.publish_results()
        if jobs.current is None:
            return TeachStatus("No teach job yet: drop 1-50 images of a concept, give it a new name, press Start.",
                               map=note("Your images will show here among the training set, on its latent map."))
        return self._status_of(jobs.current)

    def publish_results(self) -> list[str]:
        """Offer every finished run's result: its LoRA in Generate's picker, its embedding's word in every prompt;
        the names offered now."""
        models, new = self.shared.models, []
        for job in self.jobs.finished():
            if (job.out / LORA_FILE).is_file():
                if job.name not in models.loras:
                    models.loras[job.name] = str(job.out / LORA_FILE)
                    new.append(job.name)
            elif job.out not in self.jobs.embedded:
                for model in dict.fromkeys([models.main, models.live]):  # the live student too, where it fits
                    try:
                        self.shared.batcher.run(load_embedding, model.pipe, job.out / EMBEDDING_FILE)
                    except LdmError:
                        continue  # another model's encoder (a width of its own): the word stays the main model's
                self.jobs.embedded.add(job.out)
                new.append(job.name)
        return new

    def _status_of(self, job: Job) -> TeachStatus:
        p = read_progress(job.out)
        preview = self.jobs.offer(job, p.preview) if p.preview else None
        try:
            placed = self.map.svg(job, p.preview)
        except (LdmError, OSError):  # a file the run replaced meanwhile; its text would name the server's paths
            placed = note("No map this time: a file of the run changed while it was read; the next update draws it.")
        shown = dict(losses=p.losses, preview=preview, name=job.name, map=placed)
        if job.running():
            if job.stopping:
                return TeachStatus(f"{job.name}: stopping after step {p.done} (saving it)...", running=True, **shown)
            if p.done == 0:
                waited = round(time.time() - job.started)
                return TeachStatus(f"{job.name}: preparing (loading the model, making class images) · {waited} s",
                                   running=True, **shown)
            left = None if p.seconds_per_step is None else p.seconds_per_step * (job.steps - p.done)
            return TeachStatus(f"{job.name}: step {p.done} / {job.steps} · {eta(left)}", running=True, **shown)
        if p.files:  # status() offered it to the other tabs first
            use = (f"pick {job.name} in Generate's LoRA list" if (job.out / LORA_FILE).is_file()
                   else f"write {job.name} in any prompt")
            return TeachStatus(f"{job.name}: done after {p.done} steps: {use}",
                               files=[self.jobs.offer(job, f) for f in p.files], **shown)
        code = None if job.proc is None else job.proc.returncode
        resumable = self.jobs.resumable(job.name) is not None
        again = "press Start with the same name to resume it" if resumable else "no checkpoint was saved yet"
        if job.stopping or code == 130:
            return TeachStatus(f"{job.name}: stopped after step {p.done}: {again}", **shown)
        why = job.error_line() or (f"the worker was killed (signal {-code})" if code is not None and code < 0 else
                                   f"the worker ended with exit code {code}" if code is not None else
                                   "the server restarted during the run")
        return TeachStatus(f"{job.name}: {why}: {again}", **shown)
