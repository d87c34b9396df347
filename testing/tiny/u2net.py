"""A tiny stand-in for the ``u2net`` stack: an ONNX model with U^2-Net's input and first output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from predictors.background import U2NET_FILE, U2NET_SIZE


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
