"""What every tab's handlers share: the models, the dataset view, request folders, the model's thread, Stop."""

from __future__ import annotations

from pathlib import Path

from app.handlers.folders import RequestFolders
from app.handlers.models import Models
from app.handlers.teach_jobs import TeachJobs
from app.jobs import StopFlags
from ldm.errors import LdmError
from ldm.explore import DatasetView
from ldm.sampling.batching import MicroBatcher
from ldm.sampling.limits import WORK_BUDGET
from ldm.sampling.requests import Progress
from ldm.sampling.sampler import SamplingModel


class Shared:
    """One server's models, dataset view (optional), request folders under `out_dir`, model thread and Stop flags.

    Each tab's handlers are built over it (e.g. GenerateHandlers(shared)); app/server.py makes one.
    """

    def __init__(self, model: SamplingModel, view: DatasetView | None, out_dir: Path,
                 loras: dict[str, str] | None = None, work_budget: float = WORK_BUDGET, max_batch: int = 16,
                 batcher_thread: bool = True, live: SamplingModel | None = None, max_live: int = 32,
                 teach: TeachJobs | None = None):
        self.models = Models(model, live, loras)
        self.view = view
        self.out_dir = out_dir
        self.folders = RequestFolders(out_dir)
        self.work_budget = work_budget
        # all model work runs on the batcher's thread, and users' small requests with equal settings run
        # together; without a thread of its own, the caller runs self.batcher.serve_forever()
        self.batcher = MicroBatcher(model, max_batch, own_thread=batcher_thread, max_live=max_live)
        self.stops = StopFlags()  # each session's Stop button (app/events.py checks them between steps)
        self.teach = teach  # the Train tab's worker and runs (None: this server does not teach)

    @property
    def model(self) -> SamplingModel:
        """The main model: what the tabs lay out their controls for."""
        return self.models.main

    def need_view(self) -> DatasetView:
        """The dataset view, or the one-line reason there is none."""
        if self.view is None:
            raise LdmError("no dataset: start the app with --data DIR to explore the latent space")
        return self.view

    def wait_for_view(self, progress: Progress | None) -> None:
        """Wait until the dataset is encoded (at start-up, in the background), showing how far it is."""
        self.view.wait(None if progress is None else
                       lambda done, total: progress(done, total, "encoding the dataset (first time only)"))


class TabHandlers:
    """A tab's handlers: what its controls do, over the server's shared parts."""

    def __init__(self, shared: Shared):
        self.shared = shared
