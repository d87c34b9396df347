"""The tiny-stack registry writes what the manifest says a stack installs."""

import json
from pathlib import Path

import pytest

from testing import tiny


def test_tiny_builders_write_the_registered_layout(tmp_path, monkeypatch):
    monkeypatch.setitem(tiny.TINY_BUILDERS, "toy", _toy_builder)
    assert tiny.build_tiny_stacks(tmp_path, ["toy"], seed=3) == ["toy"]
    assert (tmp_path / "toy" / "seed.txt").read_text() == "3"
    assert json.loads((tmp_path / "tiny.json").read_text()) == {"stacks": ["toy"], "seed": 3}
    with pytest.raises(ValueError, match="no tiny builder"):
        tiny.build_tiny_stacks(tmp_path, ["missing"])


def _toy_builder(folder: Path, seed: int) -> None:
    folder.mkdir(parents=True)
    (folder / "seed.txt").write_text(str(seed))
