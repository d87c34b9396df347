"""Per-process and per-prediction runtime: device and dtype policy, seeding, stage timing, metrics, and what
loaders and runners get from the engine (:class:`LoadEnv`, :class:`RunContext`)."""

from __future__ import annotations

import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from predictors.background import BackgroundRemover
    from predictors.outputs import TaskResult
    from predictors.placement import Placement

MetricSink = Callable[[str, float], None]


def select_device() -> torch.device:
    """The device every stack runs on: ``PREDICTOR_DEVICE`` if set, else CUDA when available, else CPU."""
    requested = os.environ.get("PREDICTOR_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA, float32 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process and, on CUDA, peak allocated GPU memory, in MiB."""
    usage = {"cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        usage["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return usage


def log(message: str) -> None:
    """One progress line in the prediction logs (Replicate shows stdout)."""
    print(message, flush=True)


def resolve_seed(seed: int | None) -> int:
    """The given seed, or a fresh random one (logged so that a run can be repeated)."""
    return int.from_bytes(os.urandom(4), "little") if seed is None else int(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (explicit draws use ``RunContext.generator``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


StageTimer = Callable[[str], AbstractContextManager[None]]


@contextmanager
def timed_stage(name: str, record: Callable[[float], None] | None = None) -> Iterator[None]:
    """Log a stage's start and its duration in seconds (Replicate shows these lines while a run goes on)."""
    log(f"[{name}] started")
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if record is not None:
        record(elapsed)
    log(f"[{name}] done in {elapsed:.2f} s")


@dataclass(frozen=True)
class LoadEnv:
    """What a task loader gets: the weights folder, the compute device, and the policies tasks share."""

    weights_dir: Path
    device: torch.device
    placement: Placement
    background: BackgroundRemover


class Composer(Protocol):
    """The engine as a composed task sees it: other loaded tasks, called with data."""

    def call(self, task: str, values: dict[str, Any], context: RunContext) -> TaskResult: ...

    def runner(self, task: str) -> Any: ...


@dataclass
class RunContext:
    """What a runner gets for one prediction: a private work folder, device, seed, timing and composition."""

    work_dir: Path
    device: torch.device
    seed: int
    record_metric: MetricSink = field(default=lambda key, value: None)
    timings: dict[str, float] = field(default_factory=dict)
    composer: Composer | None = None

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Time a stage: logs its start and duration and records ``timing.<name>`` in seconds."""

        def record(elapsed: float) -> None:
            self.timings[name] = elapsed
            self.record_metric(f"timing.{name}", round(elapsed, 4))

        return timed_stage(name, record)

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with the run's seed (noise drawn on the CPU is the same on any device)."""
        return torch.Generator().manual_seed(self.seed)

    def call(self, task: str, **values: Any) -> TaskResult:
        """Run another loaded task with these inputs (its declaration's names; the rest take defaults) and the
        same seed; returns its result as data."""
        return self._composer().call(task, values, self)

    def task(self, name: str) -> Any:
        """The loaded runner of another task, for its data-level methods."""
        return self._composer().runner(name)

    def _composer(self) -> Composer:
        if self.composer is None:
            raise RuntimeError("this run has no engine to compose tasks with")
        return self.composer


class OutputFolders:
    """A fresh temporary folder per prediction; the previous one is removed when the next starts.

    Cog uploads returned files after ``run`` returns, so a prediction's folder must outlive the call; it is
    deleted at the start of the next prediction (predictions run one at a time).
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._current: Path | None = None

    def new(self) -> Path:
        self.release()
        self._current = Path(tempfile.mkdtemp(prefix="prediction-", dir=self._root))
        return self._current

    def release(self) -> None:
        if self._current is not None:
            shutil.rmtree(self._current, ignore_errors=True)
            self._current = None


def describe_environment(device: torch.device) -> str:
    """A one-line summary of the runtime for the setup log."""
    parts = [f"python {sys.version.split()[0]}", f"torch {torch.__version__}", f"device {device}"]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    else:
        parts.append(f"{torch.get_num_threads()} threads")
    return ", ".join(parts)
