"""Shared fixtures: every tiny stack built once per test run, and one real Cog HTTP server on them."""

import pytest

from testing.tiny import build_tiny_stacks
from testing.tiny.checkpoint import write_single_file_checkpoint
from tools.cog_server import CogServer

# A single-file copy of the tiny sd15 stack, picked with base_model=TINY_CHECKPOINT.
TINY_CHECKPOINT = "tiny-finetune"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights folder with every tiny stack (seed 0) and a tiny single-file checkpoint of the sd15 stack."""
    root = tmp_path_factory.mktemp("tiny") / "weights"
    build_tiny_stacks(root)
    checkpoint = root / "checkpoints" / f"{TINY_CHECKPOINT}.safetensors"
    checkpoint.parent.mkdir()
    write_single_file_checkpoint(root / "sd15", "sd15", checkpoint)
    return root


@pytest.fixture(scope="session")
def server(tiny_weights, tmp_path_factory):
    """``python -m cog.server.http`` on 127.0.0.1 with the combined predictor on the tiny stacks."""
    cog = CogServer(tiny_weights, tmp_path_factory.mktemp("server") / "server.log")
    try:
        status = cog.wait_ready()
        assert status["status"] == "READY", cog.log_text()
        yield cog
    finally:
        cog.stop()
