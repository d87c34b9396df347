"""Shared fixtures: one real Cog HTTP server with every tiny stack, for all server-level test modules."""

import pytest

from testing.tiny import build_tiny_stacks
from testing.tiny.checkpoint import write_single_file_checkpoint
from tools.cog_server import CogServer

# A single-file copy of the tiny sd15 stack, picked with base_model=TINY_CHECKPOINT.
TINY_CHECKPOINT = "tiny-finetune"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """``python -m cog.server.http`` on 127.0.0.1 with ``WEIGHTS_DIR`` pointing at all tiny stacks (and a tiny
    single-file checkpoint)."""
    root = tmp_path_factory.mktemp("server")
    build_tiny_stacks(root / "weights")
    checkpoint = root / "weights" / "checkpoints" / f"{TINY_CHECKPOINT}.safetensors"
    checkpoint.parent.mkdir()
    write_single_file_checkpoint(root / "weights" / "sd15", "sd15", checkpoint)
    cog = CogServer(root / "weights", root / "server.log")
    try:
        status = cog.wait_ready()
        assert status["status"] == "READY", cog.log_text()
        yield cog
    finally:
        cog.stop()
