"""The engine: loads every installed task version in ``setup``, routes each request, runs it, writes its files.

A prediction goes: :meth:`Engine.predict` routes the request's values (``predictors.forms.route``), picks the
version, parses each group of values into its declaration (``predictors.inputs.parse_inputs``), seeds, calls the
runner's ``generate(inputs, context)`` and hands the :class:`~predictors.outputs.TaskResult` to the one writer
(``predictors.outputs.write_outputs``). Composed tasks reach other loaded tasks through ``RunContext.call`` /
``RunContext.task``, which this engine serves (no task package imports another).
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from predictors import registry
from predictors.background import BackgroundRemover
from predictors.forms import Request, load_attribute, route, version_values
from predictors.inputs import parse_inputs
from predictors.outputs import MeshOutputs, TaskResult, write_outputs
from predictors.placement import Placement
from predictors.registry import Task, Version, get_task
from predictors.runtime import (
    LoadEnv,
    MetricSink,
    RunContext,
    describe_environment,
    log,
    peak_memory_mb,
    resolve_seed,
    seed_everything,
)
from weights.manifest import Manifest, missing_stacks


class Engine:
    """Loads the task versions whose weights are installed and runs predictions."""

    def __init__(self, weights_dir: Path, device: torch.device) -> None:
        self.weights_dir = Path(weights_dir)
        self.device = device
        self.runners: dict[str, dict[str, Any]] = {}  # task -> version -> runner, best version first
        self.unavailable: dict[str, str] = {}  # task -> why no version of it loaded

    def setup(self, manifest: Manifest, serves: tuple[str, ...] | None = None) -> None:
        """Load every version whose stacks are present, of the tasks in ``serves`` (and those they use; None:
        every task); log what loaded, why the rest did not, time and memory."""
        log(f"setup: {describe_environment(self.device)}; weights from {self.weights_dir}")
        wanted = _with_dependencies(serves) if serves is not None else None
        start = time.perf_counter()
        env = LoadEnv(
            self.weights_dir,
            self.device,
            Placement(self.device),
            BackgroundRemover.from_weights(self.weights_dir),
        )
        log(f"setup: background removal by {env.background.method}")
        for task in registry.TASKS:
            if wanted is not None and task.name not in wanted:
                continue
            reasons = [
                reason for version in task.versions if (reason := self._load(task, version, env, manifest))
            ]
            if task.name not in self.runners:
                self.unavailable[task.name] = " ".join(reasons)
                log(f"setup: {self.unavailable[task.name]}")
        env.placement.settle()
        memory = ", ".join(f"{key} {value:.0f}" for key, value in peak_memory_mb(self.device).items())
        elapsed = time.perf_counter() - start
        log(f"setup: ready with {', '.join(self.runners) or 'no tasks'} in {elapsed:.2f} s; {memory}")

    def _load(self, task: Task, version: Version, env: LoadEnv, manifest: Manifest) -> str | None:
        """Load one version; returns why it is unavailable, or None once it is loaded."""
        label = f"{task.name} ({version.name})" if len(task.versions) > 1 or task.version_input else task.name
        absent = [name for name in task.uses if name not in self.runners]
        if absent:
            return f"Task {label!r} needs task {', '.join(absent)}, which is not available."
        alternatives = [missing_stacks(manifest, stacks, self.weights_dir) for stacks in version.requires]
        if all(alternatives):
            fewest = min(alternatives, key=len)
            return (
                f"Task {label!r} needs weights that are not installed: {', '.join(fewest)}. "
                f"Install them with `python -m weights.download {' '.join(fewest)}`."
            )
        installed = version.requires[[len(missing) for missing in alternatives].index(0)]
        mismatch = _pipeline_mismatch(version, self.weights_dir, installed)
        if mismatch:
            return f"Task {label!r}: {mismatch}"
        start = time.perf_counter()
        try:
            runner = load_attribute(version.loader)(env)
        except Exception as error:  # one broken stack must not take the other tasks down
            traceback.print_exc()
            return f"Task {label!r} failed to load: {type(error).__name__}: {error}"
        self.runners.setdefault(task.name, {})[version.name] = runner
        log(f"setup: loaded {label} in {time.perf_counter() - start:.2f} s")
        return None

    def predict(
        self,
        task_name: str,
        values: dict[str, Any],
        out_dir: Path,
        *,
        combined: bool,
        record_metric: MetricSink,
    ) -> list[Path]:
        """Route, validate, seed and run one prediction; returns the written files in output order."""
        request = route(task_name, values, combined=combined)
        context = RunContext(out_dir, self.device, resolve_seed(request.seed), record_metric, composer=self)
        seed_everything(context.seed)
        version, inputs = self._inputs(request)
        mesh_outputs = parse_inputs(MeshOutputs, request.mesh_outputs, f"task {task_name}")
        log(f"task: {task_name} ({version}), seed: {context.seed}, device: {self.device}")
        record_metric("seed", context.seed)
        try:
            result = self.runners[task_name][version].generate(inputs, context)
            outputs = write_outputs(
                result, mesh_outputs, out_dir, device=str(self.device), stage=context.stage
            )
        except ValueError:
            raise
        except Exception:
            traceback.print_exc()
            raise
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        missing = [str(path) for path in outputs if not path.is_file()]
        if missing:
            raise RuntimeError(f"internal error: output files were not written: {', '.join(missing)}")
        if result.mesh is not None:
            record_metric("mesh.faces", int(result.mesh.faces.shape[0]))
        for key, value in peak_memory_mb(self.device).items():
            record_metric(f"memory.{key}", round(value, 1))
        return outputs

    def _inputs(self, request: Request) -> tuple[str, Any]:
        """The version to run and its parsed inputs; ValueError when the task or version is not installed."""
        task = request.task
        loaded = self.runners.get(task.name)
        if not loaded:
            raise ValueError(self.unavailable.get(task.name, f"Task {task.name!r} is not available."))
        version_name = request.version or next(v.name for v in task.versions if v.name in loaded)
        if version_name not in loaded:
            raise ValueError(
                f"{task.version_input}={version_name} is not installed for task {task.name}; installed: "
                f"{', '.join(loaded)} (or {task.version_input}=auto)"
            )
        version = next(v for v in task.versions if v.name == version_name)
        declaration = load_attribute(version.inputs or task.inputs)
        values = {**request.own, **version_values(request, version_name)}
        return version_name, parse_inputs(declaration, values, f"task {task.name}")

    # Composition (predictors.runtime.Composer): what RunContext.call / RunContext.task reach.
    def call(self, task: str, values: dict[str, Any], context: RunContext) -> TaskResult:
        """Run a loaded task on ``values`` (its own inputs; versions: the best installed) and return its data."""
        get_task(task)
        request = route(task, values, combined=False)
        version, inputs = self._inputs(request)
        return self.runners[task][version].generate(inputs, context)

    def runner(self, task: str) -> Any:
        """The loaded runner of ``task`` (its best installed version)."""
        loaded = self.runners.get(task)
        if not loaded:
            raise ValueError(self.unavailable.get(task, f"Task {task!r} is not available."))
        return next(iter(loaded.values()))


def _with_dependencies(names: tuple[str, ...]) -> set[str]:
    """``names`` and every task they use, transitively."""
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(get_task(name).uses)
    return wanted


def _pipeline_mismatch(version: Version, weights_dir: Path, stacks: tuple[str, ...]) -> str | None:
    """Why the version's main stack holds another pipeline than the version runs (None when it matches)."""
    if version.pipeline is None or not stacks:
        return None
    path = weights_dir / stacks[0] / "pipeline.json"
    try:
        name = json.loads(path.read_text()).get("name")
    except (OSError, ValueError) as error:
        return f"cannot read {path}: {error}"
    if name != version.pipeline:
        return f"{path} names the pipeline {name!r}; the {version.name} version runs {version.pipeline!r}"
    return None
