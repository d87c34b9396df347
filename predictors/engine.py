"""Task registry and dispatch: loads every available task in ``setup`` and runs one per prediction.

``predict.py`` only declares Cog inputs; this module decides which inputs apply to which task, which are
required, which stacks of weights a task needs, and how its runner is loaded.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from predictors.runtime import (
    RunContext,
    describe_environment,
    log,
    peak_memory_mb,
    resolve_seed,
    seed_everything,
)
from weights.manifest import Manifest, missing_stacks


class TaskRunner(Protocol):
    """A loaded task: turns validated inputs into output files in ``context.out_dir``."""

    def run(self, inputs: dict[str, Any], context: RunContext) -> list[Path]: ...


@dataclass(frozen=True)
class TaskSpec:
    """What a task accepts and needs.

    ``loader`` is ``"module:function"``; the function takes (weights_dir, device) and returns a TaskRunner.
    ``None`` means the task is declared in the API but not part of this build.
    """

    name: str
    inputs: tuple[str, ...]
    required: tuple[str, ...]
    loader: str | None
    stacks: tuple[str, ...] = ()


MULTIVIEW_VIEWS = ("front", "back", "left", "right", "top", "bottom")
GLOBAL_INPUTS = ("seed",)  # used by the engine for every task

TASK_SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="texture",
            inputs=(
                "mesh",
                "prompt",
                "negative_prompt",
                "base_model",
                "condition",
                "image_prompt",
                "image_prompt_scale",
                "steps",
                "guidance_scale",
                "controlnet_scale",
                "texture_size",
                "keep_uv",
                "camera_azimuths",
                "top_views",
            ),
            required=("mesh", "prompt"),
            loader="predictors.texture.task:load",
            # the ControlNet of the default condition; normal and canny need their own (checked per run)
            stacks=("sd15", "controlnet-sd15-depth"),
        ),
        TaskSpec(
            name="image-to-3d",
            inputs=(
                "image",
                "ss_steps",
                "ss_guidance",
                "slat_steps",
                "slat_guidance",
                "remove_background",
                "face_count",
                "texture_size",
                "video",
            ),
            required=("image",),
            loader="predictors.image_to_3d.task:load",
            stacks=("trellis-image-large", "dinov2-with-registers-large"),
        ),
        TaskSpec(
            name="text-to-multiview",
            inputs=(
                "prompt",
                "negative_prompt",
                "steps",
                "guidance_scale",
                "elevation",
                "azimuth_start",
                "image_size",
                "output_3d",
            ),
            required=("prompt",),
            loader="predictors.text_to_multiview.task:load",
            stacks=("mvdream-sd21", "sd21-base"),  # optional: u2net (background removal)
        ),
        TaskSpec(
            name="multiview-to-3d",
            inputs=(*MULTIVIEW_VIEWS, "resolution", "texture_size"),
            required=MULTIVIEW_VIEWS,
            loader="predictors.multiview_to_3d.task:load",
        ),
    )
}

TASKS = tuple(TASK_SPECS)


def validate_inputs(task: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Check cross-field rules for ``task``; return the inputs that apply to it (others are logged and dropped)."""
    if task not in TASK_SPECS:
        raise ValueError(f"Unknown task {task!r}. Allowed tasks: {', '.join(TASKS)}.")
    spec = TASK_SPECS[task]
    missing = [name for name in spec.required if _is_blank(inputs.get(name))]
    if missing:
        raise ValueError(
            f"Task {task!r} needs: {', '.join(spec.required)}. Missing or empty: {', '.join(missing)}."
        )
    ignored = sorted(
        name
        for name, value in inputs.items()
        if value is not None and name not in spec.inputs and name not in GLOBAL_INPUTS
    )
    if ignored:
        log(f"note: inputs not used by task {task!r} were ignored: {', '.join(ignored)}")
    return {name: inputs.get(name) for name in spec.inputs}


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class Engine:
    """Loads the tasks whose weights are installed and runs predictions."""

    def __init__(self, weights_dir: Path, device: torch.device) -> None:
        self.weights_dir = weights_dir
        self.device = device
        self.runners: dict[str, TaskRunner] = {}
        self.unavailable: dict[str, str] = {}

    def setup(self, manifest: Manifest) -> None:
        """Load every task that is built and whose stacks are present; log time and memory."""
        log(f"setup: {describe_environment(self.device)}; weights from {self.weights_dir}")
        start = time.perf_counter()
        for spec in TASK_SPECS.values():
            reason = self._load(spec, manifest)
            if reason is not None:
                self.unavailable[spec.name] = reason
                log(f"setup: {reason}")
        memory = ", ".join(f"{key} {value:.0f}" for key, value in peak_memory_mb(self.device).items())
        elapsed = time.perf_counter() - start
        log(f"setup: ready with {', '.join(self.runners) or 'no tasks'} in {elapsed:.2f} s; {memory}")

    def _load(self, spec: TaskSpec, manifest: Manifest) -> str | None:
        """Load one task's runner; returns why it is unavailable, or None once it is loaded."""
        if spec.loader is None:
            return f"Task {spec.name!r} is not available in this build."
        absent = missing_stacks(manifest, spec.stacks, self.weights_dir)
        if absent:
            return (
                f"Task {spec.name!r} needs weights that are not installed: {', '.join(absent)}. "
                f"Install them with `python -m weights.download {' '.join(absent)}`."
            )
        start = time.perf_counter()
        try:
            module_name, function_name = spec.loader.split(":")
            load = getattr(importlib.import_module(module_name), function_name)
            self.runners[spec.name] = load(self.weights_dir, self.device)
        except Exception as error:  # one broken stack must not take the other tasks down
            traceback.print_exc()
            return f"Task {spec.name!r} failed to load: {type(error).__name__}: {error}"
        log(f"setup: loaded {spec.name} in {time.perf_counter() - start:.2f} s")
        return None

    def run(
        self, task: str, inputs: dict[str, Any], context_factory: Callable[[int], RunContext]
    ) -> list[Path]:
        """Validate, seed and run one task; returns the existing output files."""
        if task in TASK_SPECS and task not in self.runners:
            raise ValueError(self.unavailable.get(task, f"Task {task!r} is not available in this build."))
        task_inputs = validate_inputs(task, inputs)
        seed = resolve_seed(inputs.get("seed"))
        seed_everything(seed)
        context = context_factory(seed)
        log(f"task: {task}, seed: {seed}, device: {self.device}")
        context.record_metric("seed", seed)
        try:
            outputs = self.runners[task].run(task_inputs, context)
        except ValueError:
            raise
        except Exception:
            traceback.print_exc()
            raise
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        missing = [str(path) for path in outputs if not Path(path).is_file()]
        if missing:
            raise RuntimeError(f"internal error: output files were not written: {', '.join(missing)}")
        for key, value in peak_memory_mb(self.device).items():
            context.record_metric(f"memory.{key}", round(value, 1))
        return [Path(path) for path in outputs]
