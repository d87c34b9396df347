"""``text-to-3d`` end to end through the real Cog HTTP server: MVDream's views composed with the reconstruction."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.support.gltf_validation import validate_glb
from tests.support.mp4_check import probe_mp4
from tools.cog_server import decode_data_uri

pytestmark = pytest.mark.server

SIZE = 128
BASE = {"prompt": "a wooden chair", "steps": 4, "image_size": SIZE, "seed": 11}


def _predict(server, **inputs) -> dict:
    response = server.predict({"task": "text-to-3d", **BASE, **inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{server.log_text()}"
    return body


@pytest.fixture(scope="module")
def model(server):
    return _predict(server)


def _image(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(decode_data_uri(uri)))


def test_a_valid_glb_turntable_and_the_rgba_views(model, tmp_path):
    outputs = model["output"]
    kinds = [uri.split(";")[0] for uri in outputs]
    assert kinds == ["data:model/gltf-binary", "data:video/mp4"] + ["data:image/png"] * 6 + [
        "data:application/json"
    ]
    glb, mp4 = tmp_path / "model.glb", tmp_path / "turntable.mp4"
    glb.write_bytes(decode_data_uri(outputs[0]))
    mp4.write_bytes(decode_data_uri(outputs[1]))
    report = validate_glb(glb)
    assert report["numErrors"] == 0, json.dumps(report, indent=2)
    frames, width, height, codec, _ = probe_mp4(mp4)
    assert frames > 0 and (width, height, codec) == (512, 512, "h264")
    assert _image(outputs[3]).size == (2 * SIZE, 2 * SIZE)
    assert all(_image(uri).mode == "RGBA" and _image(uri).size == (SIZE, SIZE) for uri in outputs[4:8])
    assert "background: removed with u2net" in model["logs"]
    assert {"denoise", "background", "carve", "bake", "export_glb"} <= set(model["metrics"]["timing"])


def test_its_views_are_the_text_to_multiview_views(server, model):
    """The composition passes text-to-multiview's images on as data: same seed, same pixels."""
    views = server.predict({"task": "text-to-multiview", **BASE}).json()["output"][1:5]
    for rgba, rgb in zip(model["output"][4:8], views, strict=True):
        np.testing.assert_array_equal(np.asarray(_image(rgba))[..., :3], np.asarray(_image(rgb)))
