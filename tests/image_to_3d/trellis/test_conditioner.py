"""DINOv2-with-registers conditioner and the hub -> transformers converter, against a hand-written hub ViT."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from predictors.image_to_3d.trellis.conditioner import DinoV2Conditioner
from weights.convert_dinov2 import convert

WIDTH, DEPTH, HEADS, REGISTERS, SIZE = 128, 2, 2, 4, 518
GRID = SIZE // 14


def random_hub_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A DINOv2 hub state dict (vit, reg4, LayerScale) with random values and the hub's key names."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.05, offset: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale + offset

    state = {
        "cls_token": rand(1, 1, WIDTH, scale=1.0),
        "pos_embed": rand(1, 1 + GRID * GRID, WIDTH, scale=0.5),
        "register_tokens": rand(1, REGISTERS, WIDTH, scale=1.0),
        "mask_token": rand(1, WIDTH),
        "patch_embed.proj.weight": rand(WIDTH, 3, 14, 14),
        "patch_embed.proj.bias": rand(WIDTH),
        "norm.weight": rand(WIDTH, offset=1.0),
        "norm.bias": rand(WIDTH),
    }
    for i in range(DEPTH):
        block = f"blocks.{i}."
        state |= {
            block + "norm1.weight": rand(WIDTH, offset=1.0),
            block + "norm1.bias": rand(WIDTH),
            block + "attn.qkv.weight": rand(3 * WIDTH, WIDTH, scale=0.2),
            block + "attn.qkv.bias": rand(3 * WIDTH),
            block + "attn.proj.weight": rand(WIDTH, WIDTH, scale=0.1),
            block + "attn.proj.bias": rand(WIDTH),
            block + "ls1.gamma": rand(WIDTH, scale=0.3, offset=1.0),
            block + "norm2.weight": rand(WIDTH, offset=1.0),
            block + "norm2.bias": rand(WIDTH),
            block + "mlp.fc1.weight": rand(4 * WIDTH, WIDTH, scale=0.1),
            block + "mlp.fc1.bias": rand(4 * WIDTH),
            block + "mlp.fc2.weight": rand(WIDTH, 4 * WIDTH, scale=0.1),
            block + "mlp.fc2.bias": rand(WIDTH),
            block + "ls2.gamma": rand(WIDTH, scale=0.3, offset=1.0),
        }
    return state


def hub_x_prenorm(state: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """The hub ViT's ``x_prenorm`` at its native resolution: [cls + pos0, registers, patches + pos]."""
    batch, head_dim = pixels.shape[0], WIDTH // HEADS
    patches = F.conv2d(pixels, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=14)
    x = torch.cat([state["cls_token"].expand(batch, -1, -1), patches.flatten(2).transpose(1, 2)], 1)
    x = x + state["pos_embed"]
    x = torch.cat([x[:, :1], state["register_tokens"].expand(batch, -1, -1), x[:, 1:]], 1)
    for i in range(DEPTH):
        p = {
            key.removeprefix(f"blocks.{i}."): value
            for key, value in state.items()
            if key.startswith(f"blocks.{i}.")
        }
        h = F.layer_norm(x, (WIDTH,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        q, k, v = (
            F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"])
            .unflatten(-1, (3, HEADS, head_dim))
            .unbind(2)
        )
        weights = torch.softmax(torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(head_dim), dim=-1)
        attended = torch.einsum("bhlm,bmhd->blhd", weights, v).flatten(2)
        x = x + p["ls1.gamma"] * F.linear(attended, p["attn.proj.weight"], p["attn.proj.bias"])
        h = F.layer_norm(x, (WIDTH,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        h = F.linear(
            F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])),
            p["mlp.fc2.weight"],
            p["mlp.fc2.bias"],
        )
        x = x + p["ls2.gamma"] * h
    return x


def imagenet(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (pixels - mean) / std


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path]:
    folder = tmp_path_factory.mktemp("dinov2")
    state = random_hub_state()
    torch.save(state, folder / "hub.pth")
    convert(folder / "hub.pth", folder / "hf")
    return state, folder / "hf"


def test_converted_weights_load_without_missing_or_unexpected_keys(converted) -> None:
    from transformers import Dinov2WithRegistersModel

    _, folder = converted
    _, info = Dinov2WithRegistersModel.from_pretrained(folder, output_loading_info=True)
    assert {key: value for key, value in info.items() if value} == {}


def test_conditioner_tokens_equal_layer_norm_of_hub_x_prenorm(converted) -> None:
    state, folder = converted
    conditioner = DinoV2Conditioner.from_folder(folder)
    pixels = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = F.layer_norm(hub_x_prenorm(state, imagenet(pixels)), (WIDTH,), eps=1e-5)
    cond, neg_cond = conditioner.conditions(pixels)
    assert cond.shape == (2, 1 + REGISTERS + GRID * GRID, WIDTH) == (2, 1374, WIDTH)
    assert torch.allclose(cond, expected, atol=1e-4)
    assert torch.equal(neg_cond, torch.zeros_like(cond))


def test_pil_images_are_read_as_rgb_in_unit_range(converted) -> None:
    _, folder = converted
    conditioner = DinoV2Conditioner.from_folder(folder)
    array = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    image = Image.fromarray(array, "RGBA")
    pixels = torch.from_numpy(array[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    assert torch.allclose(conditioner.encode([image]), conditioner.encode(pixels), atol=1e-4)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        conditioner.encode(torch.zeros(3, SIZE, SIZE))
