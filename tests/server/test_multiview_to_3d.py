"""``multiview-to-3d`` through the real Cog HTTP server (coglet) on 127.0.0.1, called as Replicate does; setup and
recovery after a failed prediction."""

import io
import json

import pytest
from PIL import Image

from tests.support.gltf_validation import validate_glb
from tests.support.mp4_check import probe_mp4
from tools.cog_server import data_uri, decode_data_uri
from tools.example_views import EXAMPLE_DIR

pytestmark = pytest.mark.server

TURNTABLE_FRAMES = 48


def _views() -> dict[str, str]:
    return {path.stem: data_uri(path) for path in sorted(EXAMPLE_DIR.glob("*.png"))}


@pytest.fixture(scope="module")
def multiview_prediction(server):
    response = server.predict(
        {"task": "multiview-to-3d", "seed": 7, "resolution": 64, "texture_size": 512, **_views()}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{server.log_text()}"
    return body


def test_setup_reports_what_it_loaded(server):
    logs = server.log_path.read_text(errors="replace")  # /health may miss the last setup lines
    assert "loaded multiview-to-3d" in logs
    assert "loaded texture" in logs


def test_multiview_prediction_outputs(multiview_prediction, tmp_path):
    outputs = multiview_prediction["output"]
    kinds = [uri.split(";")[0] for uri in outputs]
    assert kinds == ["data:model/gltf-binary", "data:video/mp4", "data:image/png"]
    glb, mp4, png = (tmp_path / name for name in ("model.glb", "turntable.mp4", "preview.png"))
    for path, uri in zip((glb, mp4, png), outputs, strict=True):
        path.write_bytes(decode_data_uri(uri))
    report = validate_glb(glb)
    assert report["numErrors"] == 0, json.dumps(report, indent=2)
    frames, width, height, codec, pix_fmt = probe_mp4(mp4)
    assert (frames, width, height, codec, pix_fmt) == (TURNTABLE_FRAMES, 512, 512, "h264", "yuv420p")
    preview = Image.open(io.BytesIO(png.read_bytes()))
    assert preview.format == "PNG" and min(preview.size) >= 256


def test_multiview_prediction_logs_and_metrics(multiview_prediction):
    metrics = multiview_prediction["metrics"]
    assert metrics["seed"] == 7
    assert {"carve", "export_glb", "turntable"} <= set(metrics["timing"])
    assert "[carve] done in" in multiview_prediction["logs"]


def test_corrupt_image_fails_readably_and_server_recovers(server, multiview_prediction):
    views = _views()
    views["front"] = "data:image/png;base64," + "bm90IGFuIGltYWdl" * 8
    body = server.predict({"task": "multiview-to-3d", **views}).json()
    assert body["status"] == "failed"
    assert "front" in body["error"] and "not an image" in body["error"]
    assert server.wait_ready(timeout_s=10)["status"] == "READY"
    missing = server.predict({"task": "multiview-to-3d", "front": views["back"]}).json()
    assert (
        missing["status"] == "failed"
        and "missing or empty: back, left, right, top, bottom" in missing["error"]
    )
    no_mesh = server.predict({"task": "texture", "prompt": "wood"}).json()
    assert no_mesh["status"] == "failed" and "missing or empty: mesh" in no_mesh["error"]
    assert server.wait_ready(timeout_s=10)["status"] == "READY"
