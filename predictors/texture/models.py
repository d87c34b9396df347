"""The texturing stacks: SD1.5 and SDXL bases (diffusers folders or single-file checkpoints), their
ControlNets, the IP-Adapter, prompt encoding and the background colour latents.

Stack folders (diffusers layout, as on the hub): ``sd15`` and ``sdxl-base`` (bases),
``controlnet-{sd15,sdxl}-<condition>`` (one per condition; SDXL has no official normal ControlNet),
``ip-adapter`` (h94/IP-Adapter "plus" files, optional) and ``checkpoints/<name>.safetensors`` (single-file
fine-tunes, picked by ``base_model=<name>``; the newest one used stays loaded). SyncMVD samples with DDPM, built
from each base's scheduler config.

Every model is loaded on the CPU and registered with the shared placement policy (``predictors.placement``),
which keeps them resident on the GPU when everything fits, or moves the ones a run needs for that run.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from predictors.diffusion.components import from_folder, vae_scale_factor
from predictors.diffusion.prompts import encode_prompts, encode_sdxl_prompts, sdxl_time_ids
from predictors.placement import Placement, module_bytes
from predictors.runtime import compute_dtype, log
from predictors.texture.checkpoints import (
    CHECKPOINT_DIR,
    checkpoint_family,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
)
from predictors.texture.conditions import CONDITIONS
from predictors.texture.ip_adapter import (
    ADAPTER_FILES,
    IP_ADAPTER_STACK,
    image_prompt_embeds,
    install_ip_adapter,
    load_image_encoder,
    set_ip_adapter_scale,
)


@dataclass(frozen=True)
class Family:
    """A base-model family: its stack folder, ControlNet stacks and SyncMVD view sizes (relative to the
    UNet's ``sample_size``: SD1.5 64 -> 96-latent views and a 512 latent texture; SDXL 128 -> 128 and 1024)."""

    name: str
    stack: str
    controlnet_stacks: dict[str, str]
    view_ratio: float
    texture_ratio: float


FAMILIES = {
    "sd15": Family(
        "sd15", "sd15", {condition: f"controlnet-sd15-{condition}" for condition in CONDITIONS}, 1.5, 8.0
    ),
    "sdxl": Family(
        "sdxl", "sdxl-base", {"depth": "controlnet-sdxl-depth", "canny": "controlnet-sdxl-canny"}, 1.0, 8.0
    ),
}
# SyncMVD's background colours (black and white first: the late steps pick only those), sRGB 0-255.
BACKGROUND_COLOURS = (
    (0, 0, 0),
    (255, 255, 255),
    (128, 0, 0),
    (255, 0, 0),
    (128, 128, 0),
    (255, 255, 0),
    (0, 128, 0),
    (0, 255, 0),
    (0, 128, 128),
    (0, 255, 255),
    (0, 0, 128),
    (0, 0, 255),
    (128, 0, 128),
    (255, 0, 255),
)
COLOUR_IMAGE_SIZE = 64  # flat colour images encoded once; their mean latent is the background latent


@dataclass
class DiffusionStack:
    """One base model ready to sample."""

    name: str
    family: Family
    tokenizers: tuple[Any, ...]
    text_encoders: tuple[torch.nn.Module, ...]
    vae: torch.nn.Module
    unet: torch.nn.Module
    scheduler_config: dict[str, Any]
    has_ip_adapter: bool = False
    colour_latents: torch.Tensor | None = None  # [K, 4] float32 on the CPU, encoded on first use

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [*self.text_encoders, self.vae, self.unet]

    @property
    def view_latents(self) -> int:
        return max(8, round(self.unet.config.sample_size * self.family.view_ratio))

    @property
    def view_pixels(self) -> int:
        return self.view_latents * vae_scale_factor(self.vae)

    @property
    def texture_latents(self) -> int:
        return max(16, round(self.unet.config.sample_size * self.family.texture_ratio))

    def new_scheduler(self):
        """A fresh DDPM scheduler from the stack's configuration."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    @torch.no_grad()
    def encode_text(
        self, prompts: list[str], device: torch.device
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(prompt embeddings [P, L, D], the UNet's extra text conditioning for the same P rows: SDXL's pooled
        text and the view size as original and target size)."""
        if self.family.name == "sd15":
            return encode_prompts(self.tokenizers[0], self.text_encoders[0], prompts, device), {}
        embeds, pooled = encode_sdxl_prompts(self.tokenizers, self.text_encoders, prompts, device)
        time_ids = sdxl_time_ids(self.view_pixels, self.view_pixels, len(prompts)).to(device)
        return embeds, {"text_embeds": pooled, "time_ids": time_ids}


@dataclass
class TextureModels:
    """Every installed texturing stack; ``placement`` says where they live between runs."""

    weights_dir: Path
    device: torch.device
    dtype: torch.dtype
    bases: dict[str, DiffusionStack]
    controlnets: dict[str, dict[str, torch.nn.Module]]  # family -> condition -> ControlNet
    image_encoder: tuple[torch.nn.Module, Any] | None  # (CLIP vision model, its image processor)
    placement: Placement
    checkpoint: DiffusionStack | None = None

    def base(self, name: str) -> DiffusionStack:
        """The stack for ``base_model``: a family name or an installed single-file checkpoint."""
        if name in FAMILIES:
            if name not in self.bases:
                stack = FAMILIES[name].stack
                raise ValueError(
                    f"base_model {name!r} needs the {stack} weights, which are not installed; install them with "
                    f"`python -m weights.download {stack} --unpinned` (installed: {self._installed_names()})"
                )
            return self.bases[name]
        if self.checkpoint is not None and self.checkpoint.name == name:
            return self.checkpoint
        if name not in list_checkpoints(self.weights_dir):
            raise ValueError(
                f"base_model {name!r} is neither sd15, sdxl nor a checkpoint in {self.weights_dir / CHECKPOINT_DIR} "
                f"(installed: {self._installed_names()})"
            )
        return self._load_checkpoint(checkpoint_path(self.weights_dir, name))

    def controlnet(self, family: Family, condition: str) -> torch.nn.Module:
        """The ControlNet of ``condition`` for ``family``; ValueError naming the stack to install."""
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; allowed: {', '.join(CONDITIONS)}")
        if condition not in family.controlnet_stacks:
            offered = ", ".join(family.controlnet_stacks)
            raise ValueError(
                f"condition {condition!r} has no official ControlNet for {family.name}; use one of {offered}"
            )
        installed = self.controlnets.get(family.name, {})
        if condition not in installed:
            stack = family.controlnet_stacks[condition]
            raise ValueError(
                f"condition {condition!r} on {family.name} needs the {stack} weights, which are not installed; "
                f"install them with `python -m weights.download {stack} --unpinned` "
                f"(installed for {family.name}: {', '.join(installed) or 'none'})"
            )
        return installed[condition]

    def image_conditioning(
        self, stack: DiffusionStack, image, scale: float, views: int
    ) -> dict[str, list[torch.Tensor]]:
        """``added_cond_kwargs`` for the image prompt over a [2N] batch; sets the adapter scale (0 without
        an image). Empty when the stack has no IP-Adapter."""
        if image is not None and (self.image_encoder is None or not stack.has_ip_adapter):
            raise ValueError(
                f"image_prompt needs the {IP_ADAPTER_STACK} weights, which are not installed; install them with "
                f"`python -m weights.download {IP_ADAPTER_STACK} --unpinned`"
            )
        if not stack.has_ip_adapter:
            return {}
        set_ip_adapter_scale(stack.unet, scale if image is not None else 0.0)
        encoder, processor = self.image_encoder
        embeds = image_prompt_embeds(encoder, processor, image, views, self.device, self.dtype)
        return {"image_embeds": embeds}

    def colour_latents(self, stack: DiffusionStack) -> torch.Tensor:
        """The stack's background colour latents [K, 4] on the compute device (its VAE must be there)."""
        if stack.colour_latents is None:
            stack.colour_latents = encode_colours(stack.vae, self.device)
        return stack.colour_latents.to(self.device)

    def _installed_names(self) -> str:
        return ", ".join([*self.bases, *list_checkpoints(self.weights_dir)]) or "none"

    def _load_checkpoint(self, path: Path) -> DiffusionStack:
        family = FAMILIES[checkpoint_family(path)]
        if family.name not in self.bases:
            raise ValueError(
                f"checkpoint {path.stem!r} is an {family.name} checkpoint; it needs the {family.stack} weights "
                f"installed for its configs and tokenizers (`python -m weights.download {family.stack} --unpinned`)"
            )
        self.checkpoint = None  # free the previous one first
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        base = self.bases[family.name]
        parts = load_checkpoint(path, family.name, self.weights_dir / family.stack, self.dtype)
        tokenizers = (
            (parts.tokenizer, parts.tokenizer_2) if parts.tokenizer_2 is not None else (parts.tokenizer,)
        )
        encoders = (
            (parts.text_encoder, parts.text_encoder_2)
            if parts.text_encoder_2 is not None
            else (parts.text_encoder,)
        )
        stack = DiffusionStack(
            path.stem, family, tokenizers, encoders, parts.vae, parts.unet, dict(base.scheduler_config)
        )
        adapter_root = self.weights_dir if self.image_encoder is not None else None
        _prepare_stack(stack, adapter_root, self.placement.home, self.dtype)
        self.checkpoint = stack
        return stack


def load_models(weights_dir: Path, device: torch.device, placement: Placement) -> TextureModels:
    """Load every installed base, ControlNet and the IP-Adapter (offline, on the CPU) and register them."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # one "accelerate not found" warning per model otherwise
    dtype = compute_dtype(device)
    bases = {
        name: load_base(weights_dir, family, dtype)
        for name, family in FAMILIES.items()
        if (weights_dir / family.stack / "unet" / "config.json").is_file()
    }
    controlnets = {name: load_controlnets(weights_dir, FAMILIES[name], dtype) for name in bases}
    encoder = None
    if (weights_dir / IP_ADAPTER_STACK).is_dir():
        encoder = load_image_encoder(weights_dir / IP_ADAPTER_STACK, dtype)
        encoder[0].eval().requires_grad_(False)
    for stack in bases.values():
        _prepare_stack(stack, weights_dir if encoder is not None else None, "cpu", dtype)
    modules = [m for stack in bases.values() for m in stack.modules]
    modules += [m for family in controlnets.values() for m in family.values()]
    modules += [encoder[0]] if encoder is not None else []
    placement.register("texture", modules)
    size_gb = sum(module_bytes(module) for module in modules) / 1e9
    log(
        f"texture: bases {', '.join(bases)}; ControlNets "
        + "; ".join(f"{name}: {', '.join(found) or 'none'}" for name, found in controlnets.items())
        + f"; IP-Adapter {'installed' if encoder is not None else 'not installed'}; {size_gb:.2f} GB"
    )
    return TextureModels(weights_dir, device, dtype, bases, controlnets, encoder, placement)


def load_base(weights_dir: Path, family: Family, dtype: torch.dtype) -> DiffusionStack:
    """A base stack from its diffusers folder (on the CPU); fp16 weight variants are used when only those
    are installed."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = weights_dir / family.stack
    tokenizers = [CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)]
    encoders = [from_folder(CLIPTextModel, folder / "text_encoder", dtype)]
    if family.name == "sdxl":
        tokenizers.append(CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True))
        encoders.append(from_folder(CLIPTextModelWithProjection, folder / "text_encoder_2", dtype))
    vae = from_folder(AutoencoderKL, folder / "vae", dtype)
    unet = from_folder(UNet2DConditionModel, folder / "unet", dtype)
    scheduler_config = dict(DDPMScheduler.load_config(folder / "scheduler", local_files_only=True))
    return DiffusionStack(
        family.name, family, tuple(tokenizers), tuple(encoders), vae, unet, scheduler_config
    )


def load_controlnets(weights_dir: Path, family: Family, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """Every installed ControlNet of ``family``, by condition (on the CPU)."""
    from diffusers import ControlNetModel

    found = {}
    for condition, stack in family.controlnet_stacks.items():
        if (weights_dir / stack / "config.json").is_file():
            found[condition] = from_folder(ControlNetModel, weights_dir / stack, dtype)
            found[condition].eval().requires_grad_(False)
    return found


def _prepare_stack(stack: DiffusionStack, adapter_root: Path | None, device, dtype: torch.dtype) -> None:
    """Eval mode, no grads, the VAE in float32 where its config asks (SDXL), the IP-Adapter installed."""
    if stack.vae.config.get("force_upcast", False):
        stack.vae.to(torch.float32)
    adapter = adapter_root / IP_ADAPTER_STACK / ADAPTER_FILES[stack.family.name] if adapter_root else None
    if adapter is not None and adapter.is_file():
        install_ip_adapter(stack.unet, adapter)
        stack.unet.to(dtype)
        stack.has_ip_adapter = True
    for module in stack.modules:
        module.to(device).eval().requires_grad_(False)


@torch.no_grad()
def encode_colours(vae: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """Latents [K, 4] of the flat background colours (the VAE posterior mean, spatially averaged), on the CPU."""
    dtype = next(vae.parameters()).dtype
    colours = torch.tensor(BACKGROUND_COLOURS, dtype=torch.float32) / 127.5 - 1.0
    images = colours[:, :, None, None].expand(-1, -1, COLOUR_IMAGE_SIZE, COLOUR_IMAGE_SIZE)
    latents = [vae.encode(image[None].to(device, dtype)).latent_dist.mean for image in images]
    return (torch.cat(latents).float().mean(dim=(2, 3)) * vae.config.scaling_factor).cpu()
