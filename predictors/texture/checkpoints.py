"""Single-file SD1.5 / SDXL checkpoints (fine-tunes such as DreamShaper or Juggernaut XL) for the texture task.

Users drop ``<name>.safetensors`` files (original LDM / SGM key layout; never pickles) into
``<weights>/checkpoints/`` and pick one with ``base_model=<name>``. Loading is offline: the configs and tokenizers
come from the installed diffusers stack of the checkpoint's family (``sd15`` or ``sdxl-base``), the weights are
converted with diffusers' single-file converters and loaded strictly: a tensor missing from the checkpoint, one
the converters or the models do not use, or a shape that does not match the base configs is a ValueError, never
a silently random weight.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from predictors.runtime import log

CHECKPOINT_DIR = "checkpoints"  # under the weights folder
FAMILIES = ("sd15", "sdxl")
FAMILY_LABELS = {"sd15": "SD1.5", "sdxl": "SDXL"}
CHECKPOINT_SUFFIX = ".safetensors"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_HEADER_BYTES = 100 * 2**20

# Component prefixes of the original layouts.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIXES = {"sd15": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
# Tensors under those prefixes that hold no weights (derived buffers and CLIP's unused temperature).
DERIVED_SUFFIXES = ("embeddings.position_ids", "logit_scale")
# Folders each family's base stack must provide (configs and tokenizers).
BASE_STACK_FILES = {
    "sd15": ("tokenizer", "text_encoder/config.json", "vae/config.json", "unet/config.json"),
    "sdxl": (
        "tokenizer",
        "tokenizer_2",
        "text_encoder/config.json",
        "text_encoder_2/config.json",
        "vae/config.json",
        "unet/config.json",
    ),
}


@dataclass
class CheckpointComponents:
    """The models of one checkpoint (on the CPU, eval mode) and the base stack's tokenizers."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    tokenizer_2: Any = None
    text_encoder_2: torch.nn.Module | None = None


def list_checkpoints(weights_dir: Path) -> dict[str, Path]:
    """Installed checkpoints by name (file stem), sorted: ``*.safetensors`` files in ``<weights>/checkpoints``
    with valid names whose real location (symlinks followed) is inside that folder."""
    folder = weights_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return {}
    root = folder.resolve()
    found = {}
    for path in sorted(folder.iterdir()):
        name = path.name.removesuffix(CHECKPOINT_SUFFIX)
        valid = path.name.endswith(CHECKPOINT_SUFFIX) and NAME_PATTERN.fullmatch(name)
        if valid and path.is_file() and path.resolve().is_relative_to(root):
            found[name] = path
    return found


def checkpoint_path(weights_dir: Path, name: str) -> Path:
    """The file of the installed checkpoint ``name``; ValueError listing the installed names otherwise."""
    installed = list_checkpoints(weights_dir)
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name) and name in installed:
        return installed[name]
    rule = (
        ""
        if isinstance(name, str) and NAME_PATTERN.fullmatch(name)
        else " (names are 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit)"
    )
    raise ValueError(
        f"checkpoint {name!r} is not installed{rule}; installed checkpoints: {', '.join(installed) or 'none'} "
        f"(put <name>{CHECKPOINT_SUFFIX} files into {weights_dir / CHECKPOINT_DIR})"
    )


def checkpoint_family(path: Path) -> str:
    """``"sd15"`` or ``"sdxl"``, from the tensor names (and the UNet's input channels) in the file's header,
    without reading tensor data; ValueError for other models."""
    shapes = _header_shapes(path)

    def has(prefix: str) -> bool:
        return any(name.startswith(prefix) for name in shapes)

    if not has(UNET_PREFIX + "input_blocks."):
        raise ValueError(
            f"{path.name} is not an SD1.5 or SDXL checkpoint: it has no {UNET_PREFIX}input_blocks.* tensors "
            "(Flux, SD3, LoRA, ControlNet and diffusers-layout files are not supported)"
        )
    input_shape = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight", [])
    if len(input_shape) != 4 or input_shape[1] != 4:
        raise ValueError(
            f"{path.name} has a UNet with input shape {input_shape}; only text-to-image checkpoints (4 latent "
            "input channels) are supported, not inpainting (9) or instruct-pix2pix (8) models"
        )
    if "edm_mean" in shapes:
        raise ValueError(f"{path.name} is a Playground v2.5 (EDM) checkpoint, which is not supported")
    if has(OPEN_CLIP_PREFIX) and has(CLIP_PREFIXES["sdxl"]):
        return "sdxl"
    if has("conditioner.embedders.0.model."):
        raise ValueError(
            f"{path.name} is an SDXL refiner checkpoint; only SDXL base fine-tunes are supported"
        )
    if has("cond_stage_model.model."):
        raise ValueError(
            f"{path.name} is an SD 2.x checkpoint (OpenCLIP ViT-H); only SD1.5 and SDXL are supported"
        )
    if has(CLIP_PREFIXES["sd15"]):
        return "sd15"
    raise ValueError(
        f"{path.name} has no text encoder tensors ({CLIP_PREFIXES['sd15']}* for SD1.5, "
        f"{CLIP_PREFIXES['sdxl']}* and {OPEN_CLIP_PREFIX}* for SDXL); only full checkpoints are supported"
    )


def load_checkpoint(path: Path, family: str, base_dir: Path, dtype: torch.dtype) -> CheckpointComponents:
    """Load the checkpoint at ``path`` (family ``family``) on the CPU in ``dtype``, with the configs and
    tokenizers of the family's installed diffusers stack ``base_dir``, offline."""
    from safetensors import safe_open
    from transformers import CLIPTokenizer

    if family not in FAMILIES:
        raise ValueError(f"unknown checkpoint family {family!r}; allowed: {', '.join(FAMILIES)}")
    found = checkpoint_family(path)
    if found != family:
        raise ValueError(f"{path.name} is an {FAMILY_LABELS[found]} checkpoint, not {FAMILY_LABELS[family]}")
    _require_base_stack(path, family, base_dir)
    start = time.perf_counter()
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        names = list(handle.keys())

        def tensors(prefix: str) -> dict[str, torch.Tensor]:
            chosen = [n for n in names if n.startswith(prefix) and not n.endswith(DERIVED_SUFFIXES)]
            if not chosen:
                raise ValueError(f"{path.name} has no {prefix}* tensors; only full checkpoints are supported")
            return {name: handle.get_tensor(name) for name in chosen}

        unet = _load_diffusers_model(
            "UNet2DConditionModel", path, tensors(UNET_PREFIX), base_dir, "unet", dtype
        )
        vae = _load_diffusers_model("AutoencoderKL", path, tensors(VAE_PREFIX), base_dir, "vae", dtype)
        text_encoder = _load_text_encoder(
            path, tensors(CLIP_PREFIXES[family]), base_dir, "text_encoder", dtype
        )
        text_encoder_2 = None
        if family == "sdxl":
            text_encoder_2 = _load_text_encoder(
                path, tensors(OPEN_CLIP_PREFIX), base_dir, "text_encoder_2", dtype
            )
    prefixes = (UNET_PREFIX, VAE_PREFIX, CLIP_PREFIXES[family], OPEN_CLIP_PREFIX)
    ignored = sum(not name.startswith(prefixes) for name in names)
    components = CheckpointComponents(
        tokenizer=CLIPTokenizer.from_pretrained(base_dir / "tokenizer", local_files_only=True),
        text_encoder=text_encoder,
        vae=vae,
        unet=unet,
        tokenizer_2=(
            CLIPTokenizer.from_pretrained(base_dir / "tokenizer_2", local_files_only=True)
            if family == "sdxl"
            else None
        ),
        text_encoder_2=text_encoder_2,
    )
    loaded = "unet, vae, text_encoder" + (", text_encoder_2" if family == "sdxl" else "")
    log(
        f"texture: checkpoint {path.stem} ({FAMILY_LABELS[family]}, {len(names)} tensors) loaded as {loaded} in "
        f"{dtype} in {time.perf_counter() - start:.1f} s, configs and tokenizers from {base_dir}"
        + (f"; {ignored} tensors outside these components skipped (EMA copies, schedules)" if ignored else "")
    )
    return components


def _header_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a ``.safetensors`` header (8-byte little-endian length, then JSON)."""
    try:
        with path.open("rb") as file:
            size = int.from_bytes(file.read(8), "little")
            if not 0 < size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError("bad header length")
            header = json.loads(file.read(size))
        return {name: list(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path.name} is not a readable .safetensors file ({error})") from error


def _require_base_stack(path: Path, family: str, base_dir: Path) -> None:
    absent = [part for part in BASE_STACK_FILES[family] if not (base_dir / part).exists()]
    if absent:
        where = (
            f"{base_dir} does not exist" if not base_dir.is_dir() else f"{base_dir} lacks {', '.join(absent)}"
        )
        raise ValueError(
            f"checkpoint {path.stem} is an {FAMILY_LABELS[family]} checkpoint; it needs the {base_dir.name} stack "
            f"installed for its configs and tokenizers (`python -m weights.download {base_dir.name} --unpinned`); "
            f"{where}"
        )


def _load_diffusers_model(
    class_name: str,
    path: Path,
    original: dict[str, torch.Tensor],
    base_dir: Path,
    subfolder: str,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """A UNet or VAE built from the base stack's config (on the meta device, so nothing is initialised twice)
    and loaded strictly with the converted tensors."""
    import diffusers
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    cls = getattr(diffusers, class_name)
    config = cls.load_config(base_dir / subfolder, local_files_only=True)
    convert = convert_ldm_unet_checkpoint if subfolder == "unet" else convert_ldm_vae_checkpoint
    converted = _converted(path, subfolder, original, lambda tensors: convert(tensors, config))
    with torch.device("meta"):
        model = cls.from_config(config)
    _check_names(path, subfolder, set(model.state_dict()), set(converted))
    state = {name: _cast(tensor, dtype) for name, tensor in converted.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ValueError(
            f"{path.name}: its {subfolder} does not match the {base_dir.name} config ({error})"
        ) from error
    return model.eval().requires_grad_(False)


def _load_text_encoder(
    path: Path, original: dict[str, torch.Tensor], base_dir: Path, subfolder: str, dtype: torch.dtype
) -> torch.nn.Module:
    """CLIP ViT-L (``text_encoder``) or SDXL's OpenCLIP ViT-bigG (``text_encoder_2``, with projection) from
    the base stack's config and the converted tensors, loaded strictly."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig.from_pretrained(base_dir / subfolder, local_files_only=True)
    if subfolder == "text_encoder":
        cls, convert = CLIPTextModel, convert_ldm_clip_checkpoint
    else:
        cls = CLIPTextModelWithProjection
        # the converter reads only the config (hidden size) of the model it is given
        holder = SimpleNamespace(config=config)

        def convert(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return convert_open_clip_checkpoint(holder, tensors, prefix=OPEN_CLIP_PREFIX)

    converted = _converted(path, subfolder, original, convert)
    try:
        model, info = cls.from_pretrained(
            None, config=config, state_dict=converted, dtype=dtype, output_loading_info=True
        )
    except RuntimeError as error:
        raise ValueError(
            f"{path.name}: its {subfolder} does not match the {base_dir.name} config ({error})"
        ) from error
    missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
    if missing or unexpected or info["mismatched_keys"]:
        _raise_names(path, subfolder, missing, unexpected + sorted(map(str, info["mismatched_keys"])))
    return model.eval().requires_grad_(False)


def _converted(
    path: Path,
    component: str,
    original: dict[str, torch.Tensor],
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """``convert(original)``, checking that the converter used every original tensor. Converters pass tensors
    through (or as views), except OpenCLIP's fused q/k/v projections and text projection, which they split or
    transpose into new tensors."""
    try:
        converted = convert(original)
    except KeyError as error:  # the converters index a few tensors without checking for them
        raise ValueError(f"{path.name}: its {component} lacks the tensor {error}") from error
    used = {id(_root(tensor)) for tensor in converted.values()}
    rebuilt = (".in_proj_weight", ".in_proj_bias", "text_projection")
    unused = sorted(
        name for name, t in original.items() if id(_root(t)) not in used and not name.endswith(rebuilt)
    )
    if unused:
        _raise_names(path, component, [], unused)
    return converted


def _check_names(path: Path, component: str, expected: set[str], given: set[str]) -> None:
    if expected != given:
        _raise_names(path, component, sorted(expected - given), sorted(given - expected))


def _raise_names(path: Path, component: str, missing: list[str], unexpected: list[str]) -> None:
    def few(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} weights missing ({few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected or mismatched tensors ({few(unexpected)})")
    raise ValueError(
        f"{path.name} does not fit the {component} architecture of its family: {'; '.join(problems)}; "
        "is it a complete, unmodified checkpoint?"
    )


def _root(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor that owns ``tensor``'s memory (a view's base)."""
    return tensor._base if tensor._base is not None else tensor


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
