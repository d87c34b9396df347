"""Tiny random stacks in the official layouts of ``mvdream-sd21``, ``sd21-base`` and ``u2net`` (tests, demo).

Registered in ``weights.tiny.TINY_BUILDERS``; the predictor loads them with the same code as the real files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from predictors.text_to_multiview.background import U2NET_FILE, U2NET_SIZE
from predictors.text_to_multiview.unet import CAMERA_DIM, MVDREAM_UNET_CONFIG, build_unet, write_stack

TINY_CONTEXT_DIM = 32
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
SPECIAL_TOKENS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}


def build_tiny_mvdream(folder: Path, seed: int) -> None:
    """``mvdream-sd21``: ``unet/`` (tiny config, random weights) and ``scheduler/``, as the converter writes."""
    torch.manual_seed(seed)
    write_stack(build_unet(TINY_UNET_CONFIG).state_dict(), folder, TINY_UNET_CONFIG)


def build_tiny_sd21_base(folder: Path, seed: int) -> None:
    """``sd21-base``: ``tokenizer/`` (byte-level BPE files), ``text_encoder/`` and ``vae/`` with tiny configs."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = _write_tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TINY_CONTEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=TINY_CONTEXT_DIM,
        pad_token_id=vocab["!"],
        bos_token_id=vocab[SPECIAL_TOKENS["bos_token"]],
        eos_token_id=vocab[SPECIAL_TOKENS["eos_token"]],
    )
    CLIPTextModel(text_config).save_pretrained(folder / "text_encoder")
    torch.manual_seed(seed + 1)
    AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.18215,
    ).save_pretrained(folder / "vae")


def _write_tokenizer(folder: Path) -> dict[str, int]:
    """CLIP's byte-level BPE files (vocab.json, merges.txt, tokenizer_config.json) with a tiny vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + [m.replace(" ", "") for m in TINY_MERGES]
    tokens += [SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "pad_token": "!",
        **SPECIAL_TOKENS,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": "!", **SPECIAL_TOKENS}, indent=2)
    )
    return vocab


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (printable Latin-1 map to themselves)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [byte for byte in range(256) if byte not in printable]
    codes = dict(zip(printable, printable, strict=True))
    codes.update({byte: 256 + index for index, byte in enumerate(others)})
    return [chr(codes[byte]) for byte in range(256)]


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
