"""Tiny random stacks in the official layouts of ``mvdream-sd21``, ``sd21-base`` and ``u2net`` (tests, demo).

Registered in ``weights.tiny.TINY_BUILDERS``; the predictor loads them with the same code as the real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from predictors.text_to_multiview.background import U2NET_FILE, U2NET_SIZE
from predictors.text_to_multiview.unet import CAMERA_DIM, MVDREAM_UNET_CONFIG, build_unet, write_stack
from weights.tiny_sd import TINY_CONTEXT_DIM, write_tiny_sd_components

# Same structure as MVDREAM_UNET_CONFIG (projection camera embedding, linear projections), two levels,
# 32/64 channels, head width 8.
TINY_UNET_CONFIG: dict[str, Any] = {
    **MVDREAM_UNET_CONFIG,
    "sample_size": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": TINY_CONTEXT_DIM,
    "attention_head_dim": [4, 8],
    "norm_num_groups": 8,
    "projection_class_embeddings_input_dim": CAMERA_DIM,
}
# A few byte-pair merges so that the tiny tokenizer exercises merging ("3d asset" appears in every prompt).
TINY_MERGES = ["a s", "as s", "ass e", "asse t</w>", "3 d</w>"]


def build_tiny_mvdream(folder: Path, seed: int) -> None:
    """``mvdream-sd21``: ``unet/`` (tiny config, random weights) and ``scheduler/``, as the converter writes."""
    torch.manual_seed(seed)
    write_stack(build_unet(TINY_UNET_CONFIG).state_dict(), folder, TINY_UNET_CONFIG)


def build_tiny_sd21_base(folder: Path, seed: int) -> None:
    """``sd21-base``: ``tokenizer/`` (byte-level BPE files), ``text_encoder/`` and ``vae/`` with tiny configs."""
    write_tiny_sd_components(folder, seed, merges=TINY_MERGES, pad_token="!", hidden_act="gelu")


def build_tiny_u2net(folder: Path, seed: int) -> None:
    """``u2net``: an ONNX model with U^2-Net's input and first output (1 x 3 x 320 x 320 -> 1 x 1 x 320 x 320)
    whose output is a centred disc (plus a zero-weighted convolution of the input), a stand-in matte."""
    del seed  # deterministic
    write_onnx_matte(folder / U2NET_FILE, _disc_logits())


def _disc_logits() -> np.ndarray:
    centre = (U2NET_SIZE - 1) / 2.0
    rows, cols = np.mgrid[:U2NET_SIZE, :U2NET_SIZE]
    radius = np.hypot(rows - centre, cols - centre) / U2NET_SIZE
    return (10.0 * (0.3 - radius)).astype(np.float32)


def write_onnx_matte(path: Path, logits: np.ndarray, input_weights: np.ndarray | None = None) -> None:
    """Write ``sigmoid(conv1x1(input; input_weights) + logits)`` as an ONNX model with U^2-Net's I/O names.

    ``input_weights`` (3 floats, default zeros) weight the normalised input channels.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros(3, np.float32) if input_weights is None else np.asarray(input_weights, np.float32)
    size = U2NET_SIZE
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input.1", "weight"], ["mixed"]),
            helper.make_node("Add", ["mixed", "logits"], ["raw"]),
            helper.make_node("Sigmoid", ["raw"], ["d0"]),
        ],
        "tiny_u2net",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, size, size])],
        initializer=[
            numpy_helper.from_array(weights.reshape(1, 3, 1, 1), "weight"),
            numpy_helper.from_array(logits.reshape(1, 1, size, size).astype(np.float32), "logits"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
