"""Tiny random stacks in the diffusers layouts of ``sdxl-base`` and ``controlnet-sdxl-{depth,canny}``.

The UNet follows SDXL's structure at tiny sizes: text-time additional embeddings (pooled text embedding of the
second text encoder + six size/crop ids), linear projections in the transformers, context = the two text
encoders' hidden sizes concatenated. The folders match stabilityai/stable-diffusion-xl-base-1.0 (two tokenizers
and text encoders, VAE, UNet, Euler scheduler config, ``model_index.json``) and diffusers/controlnet-depth-sdxl-1.0
(``config.json`` + ``diffusion_pytorch_model.fp16.safetensors``), so the task loads them like the real files.
Weights are saved as fp16 variants (``*.fp16.safetensors``, float16 tensors): the files the manifest installs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from testing.tiny.sd15 import TINY_MERGES
from testing.tiny.sd_components import (
    SPECIAL_TOKENS,
    TINY_CONTEXT_DIM,
    save_weights,
    tiny_clip_text_config,
    write_tiny_sd_components,
    write_tiny_tokenizer,
)

TINY_SDXL_TEXT_DIMS = (TINY_CONTEXT_DIM, 32)  # hidden sizes of text_encoder and text_encoder_2
TINY_SDXL_POOLED_DIM = 32  # text_encoder_2 projection_dim
TINY_SDXL_TIME_EMBED_DIM = 8
TINY_SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1],
    "cross_attention_dim": sum(TINY_SDXL_TEXT_DIMS),
    "attention_head_dim": [2, 4],
    "norm_num_groups": 8,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TINY_SDXL_TIME_EMBED_DIM,
    "projection_class_embeddings_input_dim": TINY_SDXL_POOLED_DIM + 6 * TINY_SDXL_TIME_EMBED_DIM,
}
# SDXL's VAE latent scale; its VAE overflows in fp16, hence force_upcast.
SDXL_VAE_SCALING_FACTOR = 0.13025
# stable-diffusion-xl-base-1.0's scheduler/scheduler_config.json (the task builds a DDPM scheduler from it).
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
# Component classes as in the hub folder's model_index.json.
SDXL_MODEL_INDEX: dict[str, Any] = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "add_watermarker": None,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SDXL_SECOND_PAD_TOKEN = "!"  # OpenCLIP's padding; the first tokenizer pads with the end token
WEIGHT_VARIANT = "fp16"


def tiny_sdxl_unet(seed: int):
    """A tiny random SDXL-shaped UNet2DConditionModel."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_SDXL_UNET_CONFIG)


def build_tiny_sdxl_base(folder: Path, seed: int) -> None:
    """``sdxl-base``: both tokenizers and text encoders, VAE, UNet, scheduler config and model_index.json."""
    write_tiny_sd_components(
        folder,
        seed,
        merges=TINY_MERGES,
        pad_token=SPECIAL_TOKENS["eos_token"],
        hidden_act="quick_gelu",
        vae_scaling_factor=SDXL_VAE_SCALING_FACTOR,
        variant=WEIGHT_VARIANT,
    )
    vocab = write_tiny_tokenizer(folder / "tokenizer_2", TINY_MERGES, SDXL_SECOND_PAD_TOKEN)
    save_weights(_tiny_text_encoder_2(vocab, seed + 4), folder / "text_encoder_2", WEIGHT_VARIANT)
    save_weights(tiny_sdxl_unet(seed + 2), folder / "unet", WEIGHT_VARIANT)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SDXL_SCHEDULER_CONFIG, indent=2))
    (folder / "model_index.json").write_text(json.dumps(SDXL_MODEL_INDEX, indent=2))


def build_tiny_controlnet_sdxl(folder: Path, seed: int) -> None:
    """``controlnet-sdxl-*``: a ControlNet shaped for the tiny SDXL UNet (8x conditioning downsampling)."""
    from diffusers import ControlNetModel

    unet = tiny_sdxl_unet(seed + 2)
    torch.manual_seed(seed + 3)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    save_weights(controlnet, folder, WEIGHT_VARIANT)


def _tiny_text_encoder_2(vocab: dict[str, int], seed: int):
    """A tiny CLIPTextModelWithProjection in the shape of SDXL's OpenCLIP bigG encoder (gelu, projection)."""
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = tiny_clip_text_config(
        vocab, SDXL_SECOND_PAD_TOKEN, "gelu", TINY_SDXL_TEXT_DIMS[1], TINY_SDXL_POOLED_DIM
    )
    return CLIPTextModelWithProjection(config)
