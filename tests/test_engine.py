"""Task dispatch: cross-field validation, unavailable tasks, seeding and output checks."""

from pathlib import Path

import pytest
import torch

from predictors import engine
from predictors.engine import Engine, TaskSpec, validate_inputs
from predictors.runtime import RunContext

ALL_VIEWS = {name: f"/tmp/{name}.png" for name in engine.MULTIVIEW_VIEWS}


def test_multiview_needs_every_view():
    inputs = {**ALL_VIEWS, "top": None}
    with pytest.raises(ValueError, match="top"):
        validate_inputs("multiview-to-3d", inputs)


def test_blank_prompt_is_missing():
    with pytest.raises(ValueError, match="prompt"):
        validate_inputs("text-to-multiview", {"prompt": "   "})


def test_inputs_of_other_tasks_are_dropped(capsys):
    kept = validate_inputs("multiview-to-3d", {**ALL_VIEWS, "prompt": "a cat", "resolution": 64, "seed": 3})
    assert "prompt" not in kept and kept["resolution"] == 64
    assert "ignored: prompt" in capsys.readouterr().out


def test_unknown_task():
    with pytest.raises(ValueError, match="Unknown task"):
        validate_inputs("nope", {})


class _Writer:
    def __init__(self, write: bool) -> None:
        self.write = write
        self.seen_seed: int | None = None

    def run(self, inputs, context: RunContext) -> list[Path]:
        self.seen_seed = context.seed
        path = context.output_path("model.glb")
        if self.write:
            path.write_bytes(b"glTF")
        return [path]


@pytest.fixture
def toy_engine(monkeypatch, tmp_path):
    specs = {
        "texture": TaskSpec("texture", ("prompt",), ("prompt",), None),
        "image-to-3d": TaskSpec(
            "image-to-3d", ("image",), ("image",), "tests.test_engine:_never", ("trellis",)
        ),
        "multiview-to-3d": TaskSpec(
            "multiview-to-3d", ("front",), ("front",), "tests.test_engine:_load_writer"
        ),
    }
    monkeypatch.setattr(engine, "TASK_SPECS", specs)
    eng = Engine(tmp_path / "weights", torch.device("cpu"))
    eng.setup({})
    return eng


def _load_writer(weights_dir, device):
    return _Writer(write=True)


def _never(weights_dir, device):
    raise AssertionError("a task with missing weights must not be loaded")


def _context(tmp_path):
    return lambda seed: RunContext(tmp_path, torch.device("cpu"), seed)


def test_unavailable_tasks_say_why(toy_engine, tmp_path):
    with pytest.raises(ValueError, match="not available in this build"):
        toy_engine.run("texture", {"prompt": "x"}, _context(tmp_path))
    with pytest.raises(ValueError, match=r"not installed: trellis.*weights.download trellis"):
        toy_engine.run("image-to-3d", {"image": "x.png"}, _context(tmp_path))


def test_run_seeds_and_checks_outputs(toy_engine, tmp_path):
    outputs = toy_engine.run("multiview-to-3d", {"front": "f.png", "seed": 42}, _context(tmp_path))
    assert outputs == [tmp_path / "model.glb"]
    assert toy_engine.runners["multiview-to-3d"].seen_seed == 42
    toy_engine.runners["multiview-to-3d"] = _Writer(write=False)
    with pytest.raises(RuntimeError, match="not written"):
        toy_engine.run("multiview-to-3d", {"front": "f.png"}, _context(tmp_path / "missing"))


def test_a_task_that_fails_to_load_leaves_the_others(monkeypatch, tmp_path):
    specs = {
        "texture": TaskSpec("texture", ("prompt",), ("prompt",), "tests.test_engine:_broken"),
        "multiview-to-3d": TaskSpec(
            "multiview-to-3d", ("front",), ("front",), "tests.test_engine:_load_writer"
        ),
    }
    monkeypatch.setattr(engine, "TASK_SPECS", specs)
    eng = Engine(tmp_path, torch.device("cpu"))
    eng.setup({})
    assert list(eng.runners) == ["multiview-to-3d"]
    with pytest.raises(ValueError, match="failed to load: OSError: corrupt"):
        eng.run("texture", {"prompt": "x"}, _context(tmp_path))


def _broken(weights_dir, device):
    raise OSError("corrupt checkpoint")
