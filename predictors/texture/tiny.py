"""Tiny random stacks in the diffusers layouts of ``sd15`` and ``controlnet-sd15-{depth,normal,canny}``.

Registered in ``weights.tiny.TINY_BUILDERS``; the task loads them with the same code as the real weights.
The tiny UNet has ``sample_size`` 8 (SD1.5: 64), so the task's views are 12 latents (96 px) wide.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

TINY_CONTEXT_DIM = 32
TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": TINY_CONTEXT_DIM,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
# SD1.5's scheduler settings (the official folder holds a PNDM config with these betas).
SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
SPECIAL_TOKENS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
TINY_MERGES = ["v i", "vi e", "vie w</w>"]


def build_tiny_sd15(folder: Path, seed: int) -> None:
    """``sd15``: tokenizer, text encoder, VAE, UNet and scheduler folders with tiny random models."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = _write_tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=TINY_CONTEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=TINY_CONTEXT_DIM,
            pad_token_id=vocab[SPECIAL_TOKENS["eos_token"]],
            bos_token_id=vocab[SPECIAL_TOKENS["bos_token"]],
            eos_token_id=vocab[SPECIAL_TOKENS["eos_token"]],
        )
    ).save_pretrained(folder / "text_encoder")
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
    _tiny_unet(seed + 2).save_pretrained(folder / "unet")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))


def build_tiny_controlnet(folder: Path, seed: int) -> None:
    """``controlnet-sd15-*``: a ControlNet shaped for the tiny UNet (8x conditioning downsampling)."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed + 3)
    controlnet = ControlNetModel.from_unet(
        _tiny_unet(seed + 2), conditioning_embedding_out_channels=(8, 8, 8, 8)
    )
    controlnet.save_pretrained(folder)


def _tiny_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_UNET_CONFIG)


def _write_tokenizer(folder: Path) -> dict[str, int]:
    """CLIP's byte-level BPE files with a tiny vocabulary: the 256 byte symbols, their word-final forms, the
    merges and the special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(m.replace(" ", "") for m in TINY_MERGES)]
    tokens += [SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        **SPECIAL_TOKENS,
    }
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**config, "pad_token": "<|endoftext|>"}, indent=2)
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps({**SPECIAL_TOKENS, "pad_token": "<|endoftext|>"}, indent=2)
    )
    return vocab


def _byte_symbols() -> list[str]:
    """The printable character byte-level BPE uses for each byte (printable Latin-1 bytes stand for
    themselves, the rest map to 256 and up, in byte order)."""
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols
