"""``texture`` end to end through the real Cog HTTP server, with the tiny SD1.5 + ControlNet stacks."""

import base64
import io
import json
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.gltf_validation import validate_glb
from tests.mp4_check import probe_mp4
from tools.cog_server import decode_data_uri

pytestmark = pytest.mark.server

TEXTURE_SIZE = 256


def _glb_uri(geometry) -> str:
    data = trimesh.Scene(geometry).export(file_type="glb")
    return "data:model/gltf-binary;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def box():
    mesh = trimesh.creation.box(extents=[2.0, 1.0, 0.5])
    mesh.apply_translation([3.0, 1.0, -2.0])
    return mesh


def _inputs(box, **extra) -> dict:
    return {
        "task": "texture",
        "mesh": _glb_uri(box),
        "prompt": "a wooden crate",
        "steps": 3,
        "texture_size": TEXTURE_SIZE,
        "seed": 5,
        **extra,
    }


def _predict(server, inputs) -> dict:
    response = server.predict(inputs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{server.log_text()}"
    return body


@pytest.fixture(scope="module")
def textured(server, box):
    return _predict(server, _inputs(box))


def _glb_texture_png(glb: bytes) -> bytes:
    """The embedded base-colour image of a GLB, read with the container layout (independent of trimesh)."""
    json_length = struct.unpack_from("<I", glb, 12)[0]
    document = json.loads(glb[20 : 20 + json_length])
    binary = glb[20 + json_length + 8 :]
    view = document["bufferViews"][document["images"][0]["bufferView"]]
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


def test_textured_glb_is_valid_and_keeps_the_input_geometry(textured, box, tmp_path):
    outputs = textured["output"]
    kinds = [uri.split(";")[0] for uri in outputs]
    assert kinds == ["data:model/gltf-binary", "data:video/mp4", "data:image/png", "data:image/png"]
    path = tmp_path / "model.glb"
    path.write_bytes(decode_data_uri(outputs[0]))
    report = validate_glb(path)
    assert report["numErrors"] == 0, json.dumps(report, indent=2)
    result = trimesh.load(path, force="mesh", process=False)
    unique = len(np.unique(np.round(box.vertices, 6), axis=0))
    assert unique <= len(result.vertices) <= 3 * len(box.faces)
    np.testing.assert_allclose(result.bounds, box.bounds, atol=1e-4)
    texture = Image.open(io.BytesIO(_glb_texture_png(decode_data_uri(outputs[0]))))
    assert texture.size == (TEXTURE_SIZE, TEXTURE_SIZE)
    assert np.asarray(texture).std() > 0  # not a flat fill
    mp4 = tmp_path / "turntable.mp4"
    mp4.write_bytes(decode_data_uri(outputs[1]))
    assert probe_mp4(mp4)[0] > 0
    views = Image.open(io.BytesIO(decode_data_uri(outputs[2])))
    assert views.size == (5 * 96, 2 * 96)  # 10 views of 96 px (tiny UNet: 12 latents), 5 per row
    assert {"render_conditions", "projection", "denoise", "bake"} <= set(textured["metrics"]["timing"])


def test_same_seed_same_texture_other_seed_other_texture(server, textured, box):
    again = _predict(server, _inputs(box))
    first = _glb_texture_png(decode_data_uri(textured["output"][0]))
    assert _glb_texture_png(decode_data_uri(again["output"][0])) == first
    other = _predict(
        server, _inputs(box, seed=6, condition="canny", top_views=False, camera_azimuths="0,90,180,270")
    )
    assert _glb_texture_png(decode_data_uri(other["output"][0])) != first
    assert Image.open(io.BytesIO(decode_data_uri(other["output"][2]))).size == (4 * 96, 96)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"camera_azimuths": "front,back"}, "camera_azimuths"),
        ({"base_model": "sdxl"}, "base_model"),
        (
            {"image_prompt": "data:text/plain;base64," + base64.b64encode(b"not an image").decode()},
            "image_prompt",
        ),
    ],
)
def test_bad_inputs_fail_readably(server, box, change, message):
    body = server.predict(_inputs(box, **change)).json()
    assert body["status"] == "failed" and message in body["error"], body.get("error")


def test_a_mesh_without_faces_is_refused(server, box):
    points = trimesh.PointCloud(np.random.default_rng(0).random((20, 3)))
    ply = points.export(file_type="ply")
    uri = "data:application/octet-stream;base64," + base64.b64encode(ply).decode()
    body = server.predict(_inputs(box, mesh=uri)).json()
    assert body["status"] == "failed" and "face" in body["error"].lower(), body.get("error")
    assert server.wait_ready(timeout_s=10)["status"] == "READY"
