"""``image-to-3d`` end to end through the real Cog HTTP server, with the tiny TRELLIS stack."""

import json

import pytest

from tests.support.gltf_validation import validate_glb
from tests.support.mp4_check import probe_mp4
from tools.cog_server import data_uri, decode_data_uri
from tools.example_views import EXAMPLE_DIR

pytestmark = pytest.mark.server

TURNTABLE_FRAMES = 48


@pytest.fixture(scope="module")
def image_to_3d_outputs(server, tmp_path_factory):
    """Two image-to-3d predictions with the same seed (tiny TRELLIS stack), decoded to files."""
    image = data_uri(EXAMPLE_DIR / "front.png")
    runs = []
    for attempt in range(2):
        body = server.predict(
            {"task": "image-to-3d", "image": image, "seed": 11, "face_count": 2000, "texture_size": 256}
        ).json()
        assert body["status"] == "succeeded", f"{body.get('error')}\n{server.log_text()}"
        folder = tmp_path_factory.mktemp(f"image_to_3d_{attempt}")
        files = {}
        for uri in body["output"]:
            mime = uri.split(";")[0].removeprefix("data:")
            files.setdefault(mime, []).append(folder / f"{len(files)}.bin")
            files[mime][-1].write_bytes(decode_data_uri(uri))
        runs.append((body, files))
    return runs


def test_image_to_3d_prediction_outputs(image_to_3d_outputs):
    body, files = image_to_3d_outputs[0]
    assert sorted(files) == ["image/png", "model/gltf-binary", "video/mp4"]
    assert len(files["image/png"]) == 2  # preview.png and input_processed.png
    report = validate_glb(files["model/gltf-binary"][0])
    assert report["numErrors"] == 0, json.dumps(report, indent=2)
    frames, width, height, codec, _ = probe_mp4(files["video/mp4"][0])
    assert (frames, width, height, codec) == (TURNTABLE_FRAMES, 512, 512, "h264")
    assert {"sparse_structure", "structured_latent", "decode_mesh"} <= set(body["metrics"]["timing"])


def test_image_to_3d_same_seed_same_files(image_to_3d_outputs):
    (_, first), (_, second) = image_to_3d_outputs
    assert first["model/gltf-binary"][0].read_bytes() == second["model/gltf-binary"][0].read_bytes()
    for a, b in zip(first["image/png"], second["image/png"], strict=True):
        assert a.read_bytes() == b.read_bytes()
