"""Tiny Stable Diffusion text and image components shared by the tiny stacks of the diffusion tasks.

``write_tiny_sd_components`` writes ``tokenizer/`` (CLIP's byte-level BPE files with a tiny vocabulary),
``text_encoder/`` (a tiny CLIPTextModel) and ``vae/`` (a tiny AutoencoderKL) in the diffusers layout, so the
SD1.5 (texture) and SD2.1-base (text-to-multiview) tiny stacks load through the same code as the real folders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

TINY_CONTEXT_DIM = 32
SPECIAL_TOKENS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}


def write_tiny_sd_components(
    folder: Path,
    seed: int,
    *,
    merges: Sequence[str],
    pad_token: str,
    hidden_act: str,
    vae_scaling_factor: float = 0.18215,
    variant: str | None = None,
) -> None:
    """``tokenizer/``, ``text_encoder/`` (seeded with ``seed``) and ``vae/`` (``seed + 1``) under ``folder``.

    ``merges`` are a few byte-pair merges for the tokenizer to exercise; ``pad_token`` is the model family's
    padding token ("!" for SD2.x, the end token for SD1.x); ``hidden_act`` its text encoder's activation;
    ``vae_scaling_factor`` the family's latent scale (SDXL: 0.13025; diffusers' default force_upcast stays on);
    ``variant`` "fp16" writes the hub's fp16 weight files.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    vocab = write_tiny_tokenizer(folder / "tokenizer", merges, pad_token)
    torch.manual_seed(seed)
    text_config = tiny_clip_text_config(vocab, pad_token, hidden_act, TINY_CONTEXT_DIM, TINY_CONTEXT_DIM)
    save_weights(CLIPTextModel(text_config), folder / "text_encoder", variant)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=vae_scaling_factor,
    )
    save_weights(vae, folder / "vae", variant)


def tiny_clip_text_config(
    vocab: dict[str, int], pad_token: str, hidden_act: str, hidden_size: int, projection_dim: int
):
    """A 2-layer CLIPTextConfig over ``vocab`` (77 positions), with the family's padding token and activation."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        projection_dim=projection_dim,
        pad_token_id=vocab[pad_token],
        bos_token_id=vocab[SPECIAL_TOKENS["bos_token"]],
        eos_token_id=vocab[SPECIAL_TOKENS["eos_token"]],
    )


def save_weights(model: torch.nn.Module, folder: Path, variant: str | None = None) -> None:
    """``save_pretrained`` into ``folder``; variant "fp16" stores float16 tensors as ``*.fp16.safetensors``."""
    if variant == "fp16":
        model = model.to(torch.float16)
    elif variant is not None:
        raise ValueError(f"unknown weight variant {variant!r}; allowed: fp16")
    model.save_pretrained(folder, variant=variant)


def write_tiny_tokenizer(folder: Path, merges: Sequence[str], pad_token: str) -> dict[str, int]:
    """CLIP's byte-level BPE files with a tiny vocabulary: the 256 byte symbols, their word-final forms, the
    merged tokens and the special tokens. Returns the vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(m.replace(" ", "") for m in merges)]
    tokens += [SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**config, **SPECIAL_TOKENS, "pad_token": pad_token}, indent=2)
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps({**SPECIAL_TOKENS, "pad_token": pad_token}, indent=2)
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
