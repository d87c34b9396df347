"""Prompt encoding for SD1.5 / SD2.1 (one CLIP text encoder) and SDXL (two, with pooled text and time ids).

SDXL matches diffusers' ``StableDiffusionXLPipeline.encode_prompt`` (clip_skip None) for explicit prompts: each
encoder's penultimate hidden state, concatenated on the feature axis, and the second encoder's projected pooled
output; and ``_get_add_time_ids`` with no crop and the original size equal to the target size.
"""

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


@torch.no_grad()
def encode_sdxl_prompts(
    tokenizers: tuple, text_encoders: tuple, prompts: list[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt embeddings [P, 77, D1 + D2], pooled embeddings [P, pooled_dim]) of ``prompts``.

    ``tokenizers`` and ``text_encoders`` are SDXL's pairs (CLIP ViT-L, then OpenCLIP bigG with projection);
    prompts longer than a tokenizer's ``model_max_length`` are truncated, with a log line.
    """
    hidden_states, truncated = [], False
    for tokenizer, text_encoder in zip(tokenizers, text_encoders, strict=True):
        token_ids, cut = tokenize_prompts(tokenizer, list(prompts))
        truncated |= cut
        encoder_device = next(text_encoder.parameters()).device
        output = text_encoder(token_ids.to(encoder_device), output_hidden_states=True)
        hidden_states.append(output.hidden_states[-2])
    if truncated:
        log(f"note: prompt truncated to the text encoders' {tokenizers[0].model_max_length} tokens")
    # The last encoder is the one with the projection; its projected pooled output is SDXL's text_embeds.
    pooled = output.text_embeds
    dtype = next(text_encoders[-1].parameters()).dtype
    return torch.cat(hidden_states, dim=-1).to(device, dtype), pooled.to(device, dtype)


def sdxl_time_ids(height: int, width: int, count: int) -> torch.Tensor:
    """SDXL's added time ids [count, 6] float32: original size (h, w), crop top-left (0, 0), target (h, w),
    with sizes in pixels."""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32).repeat(count, 1)
