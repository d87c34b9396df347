"""Tiny random ``ip-adapter`` stack in the hub's original layout (h94/IP-Adapter, "plus" variants).

Writes ``models/image_encoder/`` (a tiny ``CLIPVisionModelWithProjection``; like the hub folder, no
``preprocessor_config.json``) and the two adapter files shaped for the tiny SD1.5 and SDXL UNets, with the
original key names: ``image_proj.*`` (IP-Adapter's Resampler) and ``ip_adapter.<n>.to_{k,v}_ip.weight`` with
n = 1, 3, 5, ... over the UNet's cross-attention layers. Tensors are float16, as in the hub files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from predictors.texture.ip_adapter import ADAPTER_FILES, IMAGE_ENCODER_DIR

TINY_ENCODER_WIDTH = 32
TINY_ENCODER_IMAGE_SIZE = 32
TINY_ENCODER_PATCH = 8  # 16 patch tokens + the class token
# The Resampler: diffusers infers heads = to_q rows // 64, so the inner width is a multiple of 64.
TINY_RESAMPLER_WIDTH = 64
TINY_RESAMPLER_HEADS = 1
TINY_RESAMPLER_DIM_HEAD = 64
TINY_RESAMPLER_QUERIES = 4
RESAMPLER_DEPTH = 4  # as in the official files (diffusers' key conversion assumes 4 blocks)
RESAMPLER_FF_MULT = 4


def build_tiny_ip_adapter(folder: Path, seed: int) -> None:
    """``ip-adapter``: the image encoder and the SD1.5 and SDXL "plus" adapter files under ``folder``."""
    from safetensors.torch import save_file

    from testing.tiny.sd15 import _tiny_unet
    from testing.tiny.sdxl import tiny_sdxl_unet

    folder = Path(folder)
    _tiny_image_encoder(seed).to(torch.float16).save_pretrained(folder / IMAGE_ENCODER_DIR)
    unets = {"sd15": _tiny_unet(seed), "sdxl": tiny_sdxl_unet(seed)}
    for offset, (family, unet) in enumerate(unets.items(), start=1):
        generator = torch.Generator().manual_seed(seed + offset)
        tensors = {
            **_resampler_tensors(generator, unet.config.cross_attention_dim),
            **_ip_layer_tensors(generator, unet),
        }
        path = folder / ADAPTER_FILES[family]
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({key: value.to(torch.float16).contiguous() for key, value in tensors.items()}, path)


def _tiny_image_encoder(seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=TINY_ENCODER_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TINY_ENCODER_IMAGE_SIZE,
        patch_size=TINY_ENCODER_PATCH,
        projection_dim=16,
        hidden_act="gelu",
    )
    return CLIPVisionModelWithProjection(config)


def _resampler_tensors(generator: torch.Generator, output_width: int) -> dict[str, torch.Tensor]:
    """Random ``image_proj.*`` tensors of IP-Adapter's Resampler: latents, proj_in, RESAMPLER_DEPTH blocks of
    (PerceiverAttention: norm1, norm2, to_q, to_kv, to_out; FeedForward: LayerNorm, Linear, GELU, Linear),
    proj_out, norm_out."""
    width, inner = TINY_RESAMPLER_WIDTH, TINY_RESAMPLER_HEADS * TINY_RESAMPLER_DIM_HEAD
    hidden = width * RESAMPLER_FF_MULT
    tensors = {
        "latents": torch.randn(1, TINY_RESAMPLER_QUERIES, width, generator=generator) / width**0.5,
        **_linear(generator, "proj_in", TINY_ENCODER_WIDTH, width, bias=True),
        **_linear(generator, "proj_out", width, output_width, bias=True),
        **_layer_norm(generator, "norm_out", output_width),
    }
    for block in range(RESAMPLER_DEPTH):
        attention, feed_forward = f"layers.{block}.0", f"layers.{block}.1"
        tensors.update(_layer_norm(generator, f"{attention}.norm1", width))
        tensors.update(_layer_norm(generator, f"{attention}.norm2", width))
        tensors.update(_linear(generator, f"{attention}.to_q", width, inner))
        tensors.update(_linear(generator, f"{attention}.to_kv", width, 2 * inner))
        tensors.update(_linear(generator, f"{attention}.to_out", inner, width))
        tensors.update(_layer_norm(generator, f"{feed_forward}.0", width))
        tensors.update(_linear(generator, f"{feed_forward}.1", width, hidden))
        tensors.update(_linear(generator, f"{feed_forward}.3", hidden, width))
    return {f"image_proj.{key}": value for key, value in tensors.items()}


def _ip_layer_tensors(generator: torch.Generator, unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``ip_adapter.<n>.to_{k,v}_ip.weight`` for the UNet's cross-attention layers, in processor order (the
    original adapter numbers every attention layer, so the attn2 layers get the odd indices)."""
    tensors: dict[str, torch.Tensor] = {}
    cross = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for index, name in enumerate(cross):
        to_k = unet.get_submodule(name.removesuffix(".processor")).to_k
        for kind in "kv":
            key = f"ip_adapter.{2 * index + 1}.to_{kind}_ip"
            tensors.update(_linear(generator, key, to_k.in_features, to_k.out_features))
    return tensors


def _linear(
    generator: torch.Generator, name: str, fan_in: int, fan_out: int, bias: bool = False
) -> dict[str, torch.Tensor]:
    tensors = {f"{name}.weight": torch.randn(fan_out, fan_in, generator=generator) / fan_in**0.5}
    if bias:
        tensors[f"{name}.bias"] = 0.1 * torch.randn(fan_out, generator=generator)
    return tensors


def _layer_norm(generator: torch.Generator, name: str, width: int) -> dict[str, torch.Tensor]:
    return {
        f"{name}.weight": 1.0 + 0.1 * torch.randn(width, generator=generator),
        f"{name}.bias": 0.1 * torch.randn(width, generator=generator),
    }
