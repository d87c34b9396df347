"""Pieces shared by the diffusion-based tasks (texture, text-to-multiview): prompt encoding and putting a
custom processor on a UNet's self-attention layers. Task packages never import each other, so these live here."""

from __future__ import annotations

import torch

from predictors.runtime import log


def tokenize_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, bool]:
    """Token ids [len(prompts), model_max_length] (padded with the tokenizer's pad token, truncated) and whether
    any prompt was longer than that."""
    max_length = tokenizer.model_max_length
    token_ids = tokenizer(
        prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids
    longest = tokenizer(prompts, padding="longest", return_tensors="pt").input_ids.shape[1]
    return token_ids, longest > max_length


@torch.no_grad()
def encode_prompts(
    tokenizer, text_encoder: torch.nn.Module, prompts: list[str], device: torch.device
) -> torch.Tensor:
    """Text embeddings [len(prompts), max_length, D]: the text encoder's last hidden state on prompts padded (and
    truncated, with a log line) to the tokenizer's ``model_max_length``."""
    token_ids, truncated = tokenize_prompts(tokenizer, prompts)
    if truncated:
        log(f"note: prompt truncated to the text encoder's {tokenizer.model_max_length} tokens")
    return text_encoder(token_ids.to(device))[0]


def self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Processor names of the UNet's self-attention layers (``...attn1.processor``)."""
    return [name for name in unet.attn_processors if name.endswith("attn1.processor")]


def set_self_attention_processor(unet: torch.nn.Module, processor: object) -> None:
    """Put one shared ``processor`` on every ``attn1`` layer of ``unet``; other layers keep theirs."""
    processors = dict(unet.attn_processors)
    for name in self_attention_names(unet):
        processors[name] = processor
    unet.set_attn_processor(processors)
