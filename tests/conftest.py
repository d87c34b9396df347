"""Shared fixtures: one real Cog HTTP server with every tiny stack, for all server-level test modules."""

import pytest

from tools.cog_server import CogServer
from weights.tiny import build_tiny_stacks


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``python -m cog.server.http`` on 127.0.0.1 with ``WEIGHTS_DIR`` pointing at all tiny stacks."""
    root = tmp_path_factory.mktemp("server")
    build_tiny_stacks(root / "weights")
    cog = CogServer(root / "weights", root / "server.log")
    try:
        status = cog.wait_ready()
        assert status["status"] == "READY", cog.log_text()
        yield cog
    finally:
        cog.stop()
