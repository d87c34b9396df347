"""``text-to-multiview`` end to end through the real Cog HTTP server, with the tiny MVDream stacks."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from tools.cog_server import decode_data_uri

pytestmark = pytest.mark.server

SIZE = 128
BASE = {"task": "text-to-multiview", "prompt": "a wooden chair", "steps": 4, "image_size": SIZE, "seed": 11}


def _predict(server, **inputs) -> dict:
    response = server.predict({**BASE, **inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded", f"{body.get('error')}\n{server.log_text()}"
    return body


def _image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png")
    return Image.open(io.BytesIO(decode_data_uri(uri)))


@pytest.fixture(scope="module")
def views_only(server):
    return _predict(server)


def test_setup_loads_the_task(server):
    logs = server.log_path.read_text(errors="replace")  # /health may miss the last setup lines
    assert "loaded text-to-multiview" in logs and "background removal by u2net" in logs
    assert "loaded text-to-3d" in logs


def test_four_views_of_the_requested_size(views_only):
    outputs = views_only["output"]
    assert len(outputs) == 6
    grid = _image(outputs[0])
    assert grid.size == (2 * SIZE, 2 * SIZE) and grid.mode == "RGB"
    views = [_image(uri) for uri in outputs[1:5]]
    assert all(view.size == (SIZE, SIZE) and view.mode == "RGB" for view in views)
    tiles = np.asarray(grid)
    for index, view in enumerate(views):
        row, column = divmod(index, 2)
        tile = tiles[row * SIZE : (row + 1) * SIZE, column * SIZE : (column + 1) * SIZE]
        np.testing.assert_array_equal(tile, np.asarray(view))
    cameras = json.loads(decode_data_uri(outputs[5]))
    assert [view["azimuth"] for view in cameras["views"]] == [90.0, 180.0, 270.0, 360.0]
    assert all(len(view["camera"]) == 16 for view in cameras["views"])
    metrics = views_only["metrics"]
    assert metrics["seed"] == 11 and {"encode", "denoise", "decode"} <= set(metrics["timing"])
    assert "denoise: step 4/4" in views_only["logs"]


def test_same_seed_same_pixels_other_seed_other_pixels(server, views_only):
    first = [np.asarray(_image(uri)) for uri in views_only["output"][1:5]]
    again = [np.asarray(_image(uri)) for uri in _predict(server)["output"][1:5]]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _predict(server, seed=12)
    assert not np.array_equal(np.asarray(_image(other["output"][1])), first[0])


def test_bad_inputs_fail_readably(server):
    for size in (200, 1024):  # a choice: the schema refuses anything else
        assert server.predict({**BASE, "image_size": size}).status_code == 422
    missing = server.predict({"task": "text-to-multiview"}).json()
    assert missing["status"] == "failed" and "prompt" in missing["error"]
    assert server.wait_ready(timeout_s=10)["status"] == "READY"
