"""Behaviour kept across the architecture redesign: every task's files for fixed inputs and seeds, through the real
server, against fingerprints of the files the code before the redesign (commit 8a0a6ff) wrote for the same inputs.

On the machine that made the fixture (same CPU model, ISA and torch) the bytes must be equal; elsewhere float noise
may change bytes, so decoded summaries are compared with tolerances (``testing.fingerprints``). Output order is the
one writer's (mesh files first), which the redesign introduced; file names and contents are unchanged. The old
``text-to-multiview`` with ``output_3d=true`` is the composed ``text-to-3d`` task now.
"""

import base64
import json
import mimetypes
from pathlib import Path

import pytest
import trimesh

from testing.fingerprints import fingerprint, platform_signature, summary_differences
from tools.cog_server import data_uri, decode_data_uri
from tools.example_views import EXAMPLE_DIR

pytestmark = pytest.mark.server

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "outputs_before_redesign.json").read_text())
MESH = ["model.glb", "turntable.mp4", "preview.png"]
VIEWS = ["views.png", "view_0.png", "view_1.png", "view_2.png", "view_3.png", "cameras.json"]


def _box_uri() -> str:
    box = trimesh.creation.box(extents=[2.0, 1.0, 0.5])
    box.apply_translation([3.0, 1.0, -2.0])
    return (
        "data:model/gltf-binary;base64,"
        + base64.b64encode(trimesh.Scene(box).export(file_type="glb")).decode()
    )


def _view(name: str) -> str:
    return data_uri(EXAMPLE_DIR / f"{name}.png")


# case -> (inputs, the files in output order)
CASES = {
    "texture-sd15": (
        {
            "task": "texture",
            "mesh": _box_uri(),
            "prompt": "a wooden crate",
            "steps": 3,
            "texture_size": 256,
            "seed": 5,
        },
        [*MESH, "views.png"],
    ),
    "texture-sdxl": (
        {
            "task": "texture",
            "mesh": _box_uri(),
            "prompt": "a stone block",
            "base_model": "sdxl",
            "condition": "canny",
            "image_prompt": _view("front"),
            "steps": 2,
            "texture_size": 256,
            "seed": 6,
        },
        [*MESH, "views.png"],
    ),
    "image-to-3d": (
        {"task": "image-to-3d", "image": _view("front"), "seed": 11, "face_count": 2000, "texture_size": 256},
        [*MESH, "input_processed.png"],
    ),
    "image-to-3d-novideo": (
        {
            "task": "image-to-3d",
            "image": _view("left"),
            "seed": 3,
            "face_count": 2000,
            "texture_size": 256,
            "video": False,
            "ss_steps": 5,
        },
        ["model.glb", "preview.png", "input_processed.png"],
    ),
    "text-to-multiview": (
        {"task": "text-to-multiview", "prompt": "a wooden chair", "steps": 4, "image_size": 128, "seed": 11},
        VIEWS,
    ),
    "text-to-multiview-3d": (
        {"task": "text-to-3d", "prompt": "a wooden chair", "steps": 4, "image_size": 128, "seed": 11},
        [*MESH, *VIEWS],
    ),
    "multiview-to-3d": (
        {
            "task": "multiview-to-3d",
            **{name: _view(name) for name in ("front", "back", "left", "right", "top", "bottom")},
            "resolution": 64,
            "texture_size": 512,
            "seed": 7,
        },
        MESH,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_equal_the_pre_redesign_ones(server, case, tmp_path):
    inputs, names = CASES[case]
    body = server.predict(inputs).json()
    assert body["status"] == "succeeded", body.get("error")
    assert len(body["output"]) == len(names)
    files = []
    for name, uri in zip(names, body["output"], strict=True):
        assert uri.startswith(f"data:{mimetypes.guess_type(name)[0]}"), (name, uri[:40])
        (tmp_path / name).write_bytes(decode_data_uri(uri))
        files.append(fingerprint(tmp_path / name))
    before = {entry["name"]: entry for entry in FIXTURE["cases"][case]}
    assert sorted(before) == sorted(names)
    same_machine = FIXTURE["platform"] == platform_signature()
    for entry in files:
        expected = before[entry["name"]]
        if same_machine:
            assert entry["sha256"] == expected["sha256"], f"{case}/{entry['name']} changed"
        differences = summary_differences(expected["summary"], entry["summary"], f"{case}/{entry['name']}")
        assert not differences, differences
