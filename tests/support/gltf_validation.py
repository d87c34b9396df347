"""Run the Khronos glTF-Validator (npm package in tests/node) on a GLB file from a test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "validate_gltf.js"
PACKAGE = NODE_DIR / "node_modules" / "gltf-validator"


def validate_glb(path: Path | str) -> dict:
    """The validator's summary of ``path``: numErrors, numWarnings, numInfos, numHints, messages.

    Skips the calling test when node or the npm package is missing, unless the environment variable CI is
    set, in which case the test fails instead. Install the package with ``npm install --prefix tests/node``.
    """
    node = shutil.which("node")
    missing = "node" if node is None else (None if PACKAGE.is_dir() else "npm package gltf-validator")
    if missing is not None:
        message = f"glTF validation needs {missing}; run `npm install --prefix tests/node`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    completed = subprocess.run(
        [node, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"glTF validator failed on {path}: {completed.stderr.strip()}")
    return json.loads(completed.stdout)
