"""IP-Adapter "plus" (h94/IP-Adapter) for the texture task: the image prompt, for SD1.5 and SDXL UNets.

Glue around diffusers' own machinery: the original-layout adapter file goes through
``UNet2DConditionLoadersMixin._load_ip_adapter_weights`` (the route ``pipeline.load_ip_adapter`` takes), which
gives the UNet an ``encoder_hid_proj`` (the Resampler) and ``IPAdapterAttnProcessor2_0`` on every ``attn2``.
The image side follows ``encode_image(output_hidden_states=True)``: the CLIP ViT-H encoder's penultimate hidden
states (patch tokens) of the image, and of an all-zero pixel tensor for the negative half.

Stack folder ``<weights>/ip-adapter/`` holds the hub's relative paths: ``models/image_encoder/`` and the two
adapter files of ``ADAPTER_FILES``. The hub's image encoder folder has no ``preprocessor_config.json``; like
diffusers, the image processor is built from the encoder's ``image_size``.

Zero-image embeddings are not cached: they cost one encoder forward per run, batched with the image (or alone
when there is no image). ViT-H/14 at 224 px is about 0.3 TFLOP per image, against tens of TFLOP for one step
of the 2N-view UNet batch, so about 0.1 % of a run; a cache keyed on the encoder would have to follow its device
and dtype moves for no measurable gain.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from predictors.diffusion.attention import self_attention_names
from predictors.geometry.images import load_image

IP_ADAPTER_STACK = "ip-adapter"
ADAPTER_FILES = {
    "sd15": "models/ip-adapter-plus_sd15.safetensors",
    "sdxl": "sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors",
}
IMAGE_ENCODER_DIR = "models/image_encoder"
IMAGE_PROMPT_BACKGROUND = (255, 255, 255)  # transparent parts of an image prompt become white

_IP_KEY = re.compile(r"^ip_adapter\.(\d+)\.to_([kv])_ip\.weight$")


def load_image_encoder(stack_dir: Path, dtype: torch.dtype) -> tuple[torch.nn.Module, Any]:
    """The CLIP vision encoder (``CLIPVisionModelWithProjection``, eval, no grads) from
    ``stack_dir/models/image_encoder`` offline, and the ``CLIPImageProcessor`` diffusers pairs with it."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    folder = Path(stack_dir) / IMAGE_ENCODER_DIR
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"the IP-Adapter image encoder is missing: expected {folder}/config.json and model.safetensors "
            f"(install with `python -m weights.download {IP_ADAPTER_STACK} --unpinned`)"
        )
    encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True, dtype=dtype)
    encoder.eval().requires_grad_(False)
    size = encoder.config.image_size
    return encoder, CLIPImageProcessor(size=size, crop_size=size)


def install_ip_adapter(unet: torch.nn.Module, adapter_file: Path) -> None:
    """Load an original-layout IP-Adapter "plus" file (``image_proj.*`` Resampler, ``ip_adapter.<n>.to_{k,v}_ip``)
    into ``unet``: ``encoder_hid_proj`` plus an IP processor on every ``attn2``, in the UNet's dtype and device.

    The ``attn1`` processors in place (e.g. the multi-view self-attention) are kept, so the order of this call
    and ``install_multiview_attention`` does not matter. Raises ValueError when the file does not fit the UNet.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    adapter_file = Path(adapter_file)
    try:
        tensors = load_file(adapter_file)
    except (OSError, SafetensorError) as error:
        raise ValueError(f"cannot read IP-Adapter file {adapter_file}: {error}") from error
    state = {"image_proj": {}, "ip_adapter": {}}
    for key, value in tensors.items():
        group, _, name = key.partition(".")
        if group in state:
            state[group][name] = value
    _check_adapter_fits(unet, tensors, adapter_file.name)

    before = unet.attn_processors
    self_attention = self_attention_names(unet)
    # diffusers re-creates attn1 processors with their class's no-argument constructor: swap in plain ones.
    unet.set_attn_processor({**before, **{name: AttnProcessor2_0() for name in self_attention}})
    unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
    unet.set_attn_processor({**unet.attn_processors, **{name: before[name] for name in self_attention}})


def _check_adapter_fits(unet: torch.nn.Module, tensors: dict[str, torch.Tensor], name: str) -> None:
    """ValueError unless ``tensors`` is an IP-Adapter plus file for exactly this UNet's cross-attention layers."""
    if "image_proj.latents" not in tensors or "image_proj.proj_out.weight" not in tensors:
        raise ValueError(
            f"{name} is not an IP-Adapter 'plus' file (no image_proj.latents / image_proj.proj_out Resampler keys)"
        )
    context = unet.config.cross_attention_dim
    cross = [
        unet.get_submodule(key.removesuffix(".processor"))
        for key in unet.attn_processors
        if key.endswith("attn2.processor")
    ]
    ids = sorted({int(match[1]) for key in tensors if (match := _IP_KEY.match(key))})
    expected = [2 * index + 1 for index in range(len(cross))]
    adapter_context = tensors["image_proj.proj_out.weight"].shape[0]
    mismatch = ids != expected or adapter_context != context
    for layer_id, attention in zip(ids, cross, strict=False):
        for kind in "kv":
            weight = tensors.get(f"ip_adapter.{layer_id}.to_{kind}_ip.weight")
            mismatch |= weight is None or tuple(weight.shape) != tuple(attention.to_k.weight.shape)
    if mismatch:
        raise ValueError(
            f"IP-Adapter file {name} does not match this UNet: it has {len(ids)} cross-attention layers and "
            f"{adapter_context}-wide image tokens, the UNet has {len(cross)} layers with {context}-wide context "
            f"(use {ADAPTER_FILES['sd15']} for SD1.5 and {ADAPTER_FILES['sdxl']} for SDXL)"
        )


def set_ip_adapter_scale(unet: torch.nn.Module, scale: float) -> None:
    """Set the image-prompt weight of every IP processor of ``unet``; 0 skips the image branch."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"image_prompt_scale must be a finite number >= 0, got {scale}")
    processors = [
        processor
        for processor in unet.attn_processors.values()
        if isinstance(processor, IPAdapterAttnProcessor | IPAdapterAttnProcessor2_0)
    ]
    if not processors:
        raise ValueError("this UNet has no IP-Adapter installed (call install_ip_adapter first)")
    for processor in processors:
        processor.scale = [float(scale)] * len(processor.scale)


@torch.no_grad()
def image_prompt_embeds(
    encoder: torch.nn.Module,
    processor: Any,
    image: Image.Image | None,
    views: int,
    device: torch.device | str,
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """``added_cond_kwargs["image_embeds"]`` for a [2N] batch (N negatives, then N positives): one tensor
    [2N, 1, tokens, width] of the encoder's penultimate hidden states, of a zero pixel tensor for the negatives
    and of ``image`` for the positives. Without an image both halves are the zero image's (use scale 0)."""
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    encoder_dtype = next(encoder.parameters()).dtype
    if image is None:
        height, width = processor.crop_size["height"], processor.crop_size["width"]
        zeros = torch.zeros(1, 3, height, width, device=device, dtype=encoder_dtype)
        negative = positive = _penultimate_states(encoder, zeros)
    else:
        pixels = processor(image, return_tensors="pt").pixel_values.to(device=device, dtype=encoder_dtype)
        states = _penultimate_states(encoder, torch.cat([pixels, torch.zeros_like(pixels)]))
        positive, negative = states[:1], states[1:]
    halves = [negative.expand(views, -1, -1), positive.expand(views, -1, -1)]
    return [torch.cat(halves)[:, None].to(device=device, dtype=dtype)]


def _penultimate_states(encoder: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    return encoder(pixels, output_hidden_states=True).hidden_states[-2]


def load_image_prompt(path: Path) -> Image.Image:
    """Decode the user's image prompt (bounded size, PNG/JPEG/WebP) as RGB, transparency composited on white."""
    image = load_image(path, name="image_prompt")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (*IMAGE_PROMPT_BACKGROUND, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")
