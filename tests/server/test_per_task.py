"""Each per-task Cog class, served by the real server with its own committed schema (as ``cog build`` would
bundle it): it loads only its task, shows its schema, validates its inputs and runs a prediction."""

import base64
import json

import pytest
import requests
import trimesh

from tools.cog_predictors import _class_name
from tools.cog_server import ROOT, CogServer, data_uri, project_view
from tools.example_views import EXAMPLE_DIR

pytestmark = pytest.mark.server


def _views() -> dict[str, str]:
    return {path.stem: data_uri(path) for path in sorted(EXAMPLE_DIR.glob("*.png"))}


def _box_uri() -> str:
    glb = trimesh.Scene(trimesh.creation.box(extents=[1.0, 0.6, 0.4])).export(file_type="glb")
    return "data:model/gltf-binary;base64," + base64.b64encode(glb).decode()


# Cheap valid inputs per task, and one out-of-range input the schema must refuse.
CASES = {
    "texture": (
        {"mesh": _box_uri(), "prompt": "wood", "steps": 1, "camera_azimuths": "0,180", "top_views": False},
        {"steps": 0},
    ),
    "image-to-3d": (
        {"image": data_uri(EXAMPLE_DIR / "front.png"), "ss_steps": 1, "slat_steps": 1, "face_count": 1000},
        {"face_count": 10},
    ),
    "text-to-multiview": ({"prompt": "a mug", "steps": 1, "image_size": 128}, {"image_size": 100}),
    "multiview-to-3d": ({**_views(), "resolution": 32}, {"resolution": 8}),
    "text-to-3d": ({"prompt": "a mug", "steps": 1, "image_size": 128}, {"guidance_scale": -1}),
}
SMALL = {"texture_size": 256, "video": False, "seed": 1}


@pytest.mark.parametrize("task", list(CASES))
def test_the_task_class_serves_its_schema_and_runs(task, tiny_weights, tmp_path):
    schema = ROOT / ".cog" / "schemas" / f"{task}.json"
    project = project_view(tmp_path / "project", schema)
    cog = CogServer(tiny_weights, tmp_path / "server.log", predictor=_class_name(task), project=project)
    try:
        assert cog.wait_ready()["status"] == "READY", cog.log_text()
        served = requests.get(f"{cog.url}/openapi.json", timeout=5).json()
        assert served == json.loads(schema.read_text())
        logs = cog.log_path.read_text(errors="replace")
        assert f"loaded {task}" in logs and "ready with" in logs
        other = next(name for name in CASES if name not in (task, "text-to-multiview", "multiview-to-3d"))
        assert f"loaded {other}" not in logs  # only this task (and what it uses) is loaded
        valid, out_of_range = CASES[task]
        properties = served["components"]["schemas"]["Input"]["properties"]
        inputs = {**valid, **{key: value for key, value in SMALL.items() if key in properties}}
        assert cog.predict({**inputs, **out_of_range}).status_code == 422
        body = cog.predict(inputs).json()
        assert body["status"] == "succeeded", f"{body.get('error')}\n{cog.log_text()}"
        assert body["output"]
    finally:
        cog.stop()
