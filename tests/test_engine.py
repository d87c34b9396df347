"""The engine with a toy registry: routing of both forms, versions, unavailable tasks, composition, the writer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from predictors import forms, registry
from predictors.engine import Engine
from predictors.inputs import option, required
from predictors.outputs import TaskResult
from predictors.registry import Task, Version


@dataclass(frozen=True)
class DrawInputs:
    prompt: str = required("what to draw.")
    size: int = option(8, "image side.", ge=4, le=64)


@dataclass(frozen=True)
class DrawV1Inputs(DrawInputs):
    strokes: int = option(3, "strokes (v1 only).", ge=1, le=9)


@dataclass(frozen=True)
class DrawV2Inputs(DrawInputs):
    brush: str = option("round", "brush (v2 only).", choices=("round", "flat"))


@dataclass(frozen=True)
class FrameInputs:
    prompt: str = required("what to frame.")
    size: int = option(16, "image side.", ge=4, le=64)


class Drawer:
    def __init__(self, version: str) -> None:
        self.version = version
        self.seen: list = []

    def generate(self, inputs, context) -> TaskResult:
        self.seen.append((inputs, context.seed))
        pixels = torch.rand(inputs.size, inputs.size, 3, generator=context.generator()).numpy()
        image = np.round(pixels * 255).astype(np.uint8)
        return TaskResult(images={"image.png": image}, documents={"info.json": {"version": self.version}})


class Framer:
    def generate(self, inputs, context) -> TaskResult:
        drawn = context.call("draw", prompt=inputs.prompt, size=inputs.size)
        framed = np.pad(drawn.images["image.png"], ((1, 1), (1, 1), (0, 0)))
        return TaskResult(images={"framed.png": framed})


def load_v1(env):
    return Drawer("v1")


def load_v2(env):
    return Drawer("v2")


def load_broken(env):
    raise OSError("corrupt checkpoint")


def load_framer(env):
    return Framer()


def _task(name: str, **changes) -> Task:
    here = "tests.test_engine"
    base = {
        "draw": Task(
            "draw",
            "Draw.",
            f"{here}:DrawInputs",
            (
                Version("v2", f"{here}:load_v2", requires=(("brushes",),), inputs=f"{here}:DrawV2Inputs"),
                Version("v1", f"{here}:load_v1", inputs=f"{here}:DrawV1Inputs"),
            ),
            version_input="model",
        ),
        "frame": Task(
            "frame",
            "Frame.",
            f"{here}:FrameInputs",
            (Version("plain", f"{here}:load_framer"),),
            uses=("draw",),
        ),
    }[name]
    return Task(**{**base.__dict__, **changes})


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """Install a toy registry; returns a function making an engine with the given installed stacks."""

    def install(*tasks: Task) -> None:
        monkeypatch.setattr(registry, "TASKS", tasks)
        forms.task_form.cache_clear()
        forms.combined_form.cache_clear()

    yield install
    forms.task_form.cache_clear()
    forms.combined_form.cache_clear()


def _engine(tmp_path: Path, installed: tuple[str, ...] = ()) -> Engine:
    manifest = {}
    for name in installed:
        (tmp_path / "weights" / name).mkdir(parents=True)
        (tmp_path / "weights" / name / "w.bin").write_bytes(b"w")
        manifest[name] = _Stack(("w.bin",))
    engine = Engine(tmp_path / "weights", torch.device("cpu"))
    engine.setup(manifest)
    return engine


@dataclass(frozen=True)
class _Stack:
    installed_paths: tuple[str, ...]


def _predict(engine: Engine, tmp_path: Path, task: str, combined: bool = False, **values):
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    out.mkdir()
    metrics = {}
    files = engine.predict(task, values, out, combined=combined, record_metric=metrics.__setitem__)
    return files, metrics


def test_best_installed_version_runs_and_missing_ones_say_what_to_install(toy, tmp_path):
    toy(_task("draw"))
    engine = _engine(tmp_path)
    assert list(engine.runners["draw"]) == ["v1"]
    files, metrics = _predict(engine, tmp_path, "draw", prompt="a cat", seed=3)
    assert [path.name for path in files] == ["image.png", "info.json"]
    assert json.loads(files[1].read_text()) == {"version": "v1"} and metrics["seed"] == 3
    with pytest.raises(ValueError, match=r"model=v2 is not installed .* installed: v1"):
        _predict(engine, tmp_path, "draw", prompt="a cat", model="v2")
    with pytest.raises(ValueError, match=r"brush applies to model=v2 only"):
        _predict(engine, tmp_path, "draw", prompt="a cat", brush="flat")
    engine = _engine(tmp_path / "both", ("brushes",))
    assert list(engine.runners["draw"]) == ["v2", "v1"]
    files, _ = _predict(engine, tmp_path, "draw", prompt="a cat", brush="flat")
    assert json.loads(files[1].read_text()) == {"version": "v2"}
    inputs, _ = engine.runners["draw"]["v2"].seen[-1]
    assert isinstance(inputs, DrawV2Inputs) and inputs.brush == "flat" and inputs.size == 8


def test_same_seed_same_files(toy, tmp_path):
    toy(_task("draw"))
    engine = _engine(tmp_path)
    first, _ = _predict(engine, tmp_path, "draw", prompt="x", seed=5)
    second, _ = _predict(engine, tmp_path, "draw", prompt="x", seed=5)
    third, _ = _predict(engine, tmp_path, "draw", prompt="x", seed=6)
    assert first[0].read_bytes() == second[0].read_bytes() != third[0].read_bytes()


def test_per_task_form_rejects_bad_values_with_the_input_named(toy, tmp_path):
    toy(_task("draw"))
    engine = _engine(tmp_path)
    for values, message in (
        ({}, r"needs prompt; missing or empty: prompt"),
        ({"prompt": "   "}, r"missing or empty: prompt"),
        ({"prompt": "x", "size": 100}, r"size must be in \[4, 64\]; got 100"),
        ({"prompt": "x", "size": 8.5}, r"size must be an integer"),
        ({"prompt": "x", "model": "v9"}, r"model must be one of auto, v2, v1"),
        ({"prompt": "x", "colour": "red"}, r"task draw has no input named colour"),
    ):
        with pytest.raises(ValueError, match=message):
            _predict(engine, tmp_path, "draw", **values)


def test_combined_form_refuses_an_input_the_task_does_not_use(toy, tmp_path):
    toy(_task("draw"), _task("frame"))
    merged = {field.field.name: field for field in forms.combined_form()}
    assert merged["size"].field.default is None  # 8 (draw) and 16 (frame) disagree
    assert merged["strokes"].field.default == 3 and merged["strokes"].tasks == ("draw",)
    engine = _engine(tmp_path)
    with pytest.raises(
        ValueError, match=r"input strokes does not apply to task frame; it is an input of draw"
    ):
        _predict(engine, tmp_path, "frame", combined=True, prompt="x", strokes=5)
    # left at the combined default (what Cog fills in) or null, it is fine
    files, _ = _predict(
        engine, tmp_path, "frame", combined=True, prompt="x", strokes=3, brush=None, size=None
    )
    assert [path.name for path in files] == ["framed.png"]


def test_composed_task_calls_the_loaded_task_with_data(toy, tmp_path):
    toy(_task("draw"), _task("frame"))
    engine = _engine(tmp_path)
    files, _ = _predict(engine, tmp_path, "frame", prompt="a cat", size=6, seed=2)
    from PIL import Image

    assert Image.open(files[0]).size == (8, 8)
    inputs, seed = engine.runners["draw"]["v1"].seen[-1]
    assert inputs.prompt == "a cat" and inputs.size == 6 and seed == 2


def test_a_task_whose_version_fails_to_load_leaves_the_others(toy, tmp_path):
    toy(
        _task("draw", versions=(Version("v1", "tests.test_engine:load_broken"),), version_input=None),
        _task("frame"),
    )
    engine = _engine(tmp_path)
    assert engine.runners == {}
    with pytest.raises(ValueError, match="failed to load: OSError: corrupt checkpoint"):
        _predict(engine, tmp_path, "draw", prompt="x")
    with pytest.raises(ValueError, match="needs task draw, which is not available"):
        _predict(engine, tmp_path, "frame", prompt="x")


def test_unknown_task(toy, tmp_path):
    toy(_task("draw"))
    with pytest.raises(ValueError, match="unknown task 'paint'; tasks: draw"):
        _predict(_engine(tmp_path), tmp_path, "paint", prompt="x")
