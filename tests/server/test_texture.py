"""``texture`` end to end through the real Cog HTTP server, with the tiny SD1.5 + ControlNet stacks."""

import base64
import io
import json
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.conftest import TINY_CHECKPOINT
from tests.support.gltf_validation import validate_glb
from tests.support.mp4_check import probe_mp4
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
    views = Image.open(io.BytesIO(decode_data_uri(outputs[3])))
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
    assert Image.open(io.BytesIO(decode_data_uri(other["output"][3]))).size == (4 * 96, 96)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"camera_azimuths": "front,back"}, "camera_azimuths"),
        ({"base_model": "no-such-model"}, "no-such-model"),
        ({"base_model": "sdxl", "condition": "normal"}, "no official ControlNet for sdxl"),
        (
            {"image_prompt": "data:text/plain;base64," + base64.b64encode(b"not an image").decode()},
            "image_prompt",
        ),
    ],
)
def test_bad_inputs_fail_readably(server, box, change, message):
    body = server.predict(_inputs(box, **change)).json()
    assert body["status"] == "failed" and message in body["error"], body.get("error")


def test_a_single_file_checkpoint_is_picked_by_name(server, textured, box):
    """The tiny checkpoint holds the sd15 stack's weights in the original single-file layout: same texture."""
    body = _predict(server, _inputs(box, base_model=TINY_CHECKPOINT))
    first = _glb_texture_png(decode_data_uri(textured["output"][0]))
    assert _glb_texture_png(decode_data_uri(body["output"][0])) == first


def _png_uri(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_sdxl_with_an_image_prompt(server, box, tmp_path):
    """SDXL (tiny: 8-latent, 64 px views) + canny ControlNet + IP-Adapter: a valid textured GLB; the image
    prompt is deterministic and changes the texture; its scale 0 equals no image prompt."""
    inputs = _inputs(box, base_model="sdxl", condition="canny", image_prompt=_png_uri(1))
    first = _predict(server, inputs)
    path = tmp_path / "model.glb"
    path.write_bytes(decode_data_uri(first["output"][0]))
    assert validate_glb(path)["numErrors"] == 0
    np.testing.assert_allclose(trimesh.load(path, force="mesh").bounds, box.bounds, atol=1e-4)
    assert Image.open(io.BytesIO(decode_data_uri(first["output"][3]))).size == (5 * 64, 2 * 64)
    texture = _glb_texture_png(decode_data_uri(first["output"][0]))
    assert _glb_texture_png(decode_data_uri(_predict(server, inputs)["output"][0])) == texture
    plain = _predict(server, _inputs(box, base_model="sdxl", condition="canny"))
    assert _glb_texture_png(decode_data_uri(plain["output"][0])) != texture
    muted = _predict(server, {**inputs, "image_prompt_scale": 0.0})
    assert _glb_texture_png(decode_data_uri(muted["output"][0])) == _glb_texture_png(
        decode_data_uri(plain["output"][0])
    )


def test_a_mesh_without_faces_is_refused(server, box):
    points = trimesh.PointCloud(np.random.default_rng(0).random((20, 3)))
    ply = points.export(file_type="ply")
    uri = "data:application/octet-stream;base64," + base64.b64encode(ply).decode()
    body = server.predict(_inputs(box, mesh=uri)).json()
    assert body["status"] == "failed" and "face" in body["error"].lower(), body.get("error")
    assert server.wait_ready(timeout_s=10)["status"] == "READY"
