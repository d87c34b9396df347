"""The combined predictor's form through the real server: 422 from the schema, inputs of other tasks refused."""

import pytest

from tools.cog_server import data_uri
from tools.example_views import EXAMPLE_DIR

pytestmark = pytest.mark.server


def _views() -> dict[str, str]:
    return {path.stem: data_uri(path) for path in sorted(EXAMPLE_DIR.glob("*.png"))}


def test_bad_enum_and_range_get_422(server):
    response = server.predict({"task": "sculpt"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "input", "task"]
    response = server.predict({"task": "multiview-to-3d", "resolution": 100000})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"steps": 10}, "input steps does not apply to task multiview-to-3d; it is an input of texture, "),
        (
            {"top_views": False},
            "input top_views does not apply to task multiview-to-3d; it is an input of texture",
        ),
        ({"prompt": "a chair"}, "input prompt does not apply to task multiview-to-3d"),
    ],
)
def test_an_input_the_task_does_not_use_is_an_error(server, extra, message):
    body = server.predict({"task": "multiview-to-3d", "resolution": 32, **_views(), **extra}).json()
    assert body["status"] == "failed" and message in body["error"], body.get("error")
    assert server.wait_ready(timeout_s=10)["status"] == "READY"


def test_inputs_left_at_their_shown_default_are_fine(server):
    """Cog fills every shown default in; those of other tasks must not count as given."""
    body = server.predict({"task": "multiview-to-3d", "resolution": 32, **_views(), "top_views": True}).json()
    assert body["status"] == "succeeded", body.get("error")
