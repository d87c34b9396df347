"""Write a diffusers-layout SD1.5 / SDXL stack as one single-file checkpoint in the original key layout.

Fine-tunes such as DreamShaper or Juggernaut XL ship as one ``.safetensors`` file with the key names of the
original training code: CompVis LDM for SD1.5, Stability's SGM for SDXL. This module maps the other way from
diffusers' single-file conversion (our own mapping, derived from the module structure of both layouts), so tests
can build tiny checkpoints of that kind from the tiny stacks:

- UNet ``model.diffusion_model.*``: ``input_blocks.N.{0: resnet or downsampler op, 1: transformer}``,
  ``middle_block.{0,1,2}``, ``output_blocks.N.{0: resnet, 1: transformer, last: upsampler}``, resnets with
  ``in_layers`` / ``emb_layers`` / ``out_layers`` / ``skip_connection``;
- VAE ``first_stage_model.*``: ``encoder.down.i.block.j``, ``decoder.up.(n-1-i)`` (reverse order), ``mid.block_1``,
  ``mid.attn_1`` with 1x1 convolutions for q, k, v, proj_out;
- CLIP ViT-L (transformers layout below ``text_model.``): ``cond_stage_model.transformer.text_model.*`` (SD1.5) or
  ``conditioner.embedders.0.transformer.text_model.*`` (SDXL);
- SDXL's OpenCLIP ViT-bigG ``conditioner.embedders.1.model.*``: ``transformer.resblocks.i`` with fused
  ``attn.in_proj_{weight,bias}`` (q, k, v stacked), ``ln_1``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``;
  ``token_embedding``, ``positional_embedding``, ``ln_final`` and ``text_projection`` (width x projection, the
  transpose of the diffusers linear weight).

The file also carries the derived tensors real checkpoints hold (CLIP ``position_ids``, OpenCLIP ``logit_scale``),
which loaders must skip.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIXES = {
    "sd15": "cond_stage_model.transformer.text_model.",
    "sdxl": "conditioner.embedders.0.transformer.text_model.",
}
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
TRAINED_LOGIT_SCALE = math.log(100.0)  # CLIP's learned temperature ends at the clamp, 100

# diffusers resnet member -> LDM name (UNet) and -> original VAE name (only the shortcut differs there)
UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
UNET_TOP_NAMES = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPEN_CLIP_TOP_NAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
OPEN_CLIP_LAYER_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def write_single_file_checkpoint(stack_dir: Path, family: str, out_path: Path) -> None:
    """Write the stack in ``stack_dir`` (``unet``, ``vae``, ``text_encoder`` and, for SDXL, ``text_encoder_2``
    folders in the diffusers layout) as one original-layout ``.safetensors`` file at ``out_path``."""
    from safetensors.torch import save_file

    if family not in CLIP_PREFIXES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(CLIP_PREFIXES)}")
    unet_config = json.loads((stack_dir / "unet" / "config.json").read_text())
    vae_config = json.loads((stack_dir / "vae" / "config.json").read_text())
    text_config = json.loads((stack_dir / "text_encoder" / "config.json").read_text())
    tensors = {
        **_prefixed(
            UNET_PREFIX, ldm_unet_tensors(_weights(stack_dir / "unet"), unet_config["layers_per_block"])
        ),
        **_prefixed(
            VAE_PREFIX, ldm_vae_tensors(_weights(stack_dir / "vae"), len(vae_config["up_block_types"]))
        ),
        **_prefixed(
            CLIP_PREFIXES[family],
            clip_tensors(_weights(stack_dir / "text_encoder"), text_config["max_position_embeddings"]),
        ),
    }
    if family == "sdxl":
        tensors.update(_prefixed(OPEN_CLIP_PREFIX, open_clip_tensors(_weights(stack_dir / "text_encoder_2"))))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {name: tensor.contiguous() for name, tensor in tensors.items()}, out_path, metadata={"format": "pt"}
    )


def ldm_unet_tensors(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel state dict under LDM names (without the ``model.diffusion_model.``)."""
    if not isinstance(layers_per_block, int):
        raise ValueError(f"only one layers_per_block for all blocks is supported, got {layers_per_block!r}")
    up_with_attention = {
        int(m[1]) for name in state if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", name))
    }
    return {ldm_unet_name(name, layers_per_block, up_with_attention): t for name, t in state.items()}


def ldm_unet_name(name: str, layers_per_block: int, up_with_attention: set[int]) -> str:
    """The LDM name of one diffusers UNet tensor. Down block b holds ``layers_per_block`` resnets (input blocks
    ``1 + b*(L+1) + j``) and then its downsampler; up block b holds ``L+1`` resnets (output blocks
    ``b*(L+1) + j``), its upsampler sitting in the last one after the transformer if there is one."""
    step = layers_per_block + 1
    resnet, other = UNET_RESNET_NAMES, {}
    for pattern, place, renames in (
        (r"down_blocks\.(\d+)\.resnets\.(\d+)\.", lambda b, j: f"input_blocks.{1 + b * step + j}.0.", resnet),
        (
            r"down_blocks\.(\d+)\.attentions\.(\d+)\.",
            lambda b, j: f"input_blocks.{1 + b * step + j}.1.",
            other,
        ),
        (
            r"down_blocks\.(\d+)\.downsamplers\.(0)\.conv\.",
            lambda b, _: f"input_blocks.{(b + 1) * step}.0.op.",
            other,
        ),
        (r"mid_block\.resnets\.(\d+)\.()", lambda k, _: f"middle_block.{2 * k}.", resnet),
        (r"mid_block\.attentions\.(0)\.()", lambda *_: "middle_block.1.", other),
        (r"up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda b, j: f"output_blocks.{b * step + j}.0.", resnet),
        (r"up_blocks\.(\d+)\.attentions\.(\d+)\.", lambda b, j: f"output_blocks.{b * step + j}.1.", other),
        (
            r"up_blocks\.(\d+)\.upsamplers\.(0)\.",
            lambda b, _: f"output_blocks.{b * step + layers_per_block}.{2 if b in up_with_attention else 1}.",
            other,
        ),
    ):
        match = re.match(pattern, name)
        if match:
            numbers = [int(group) if group else 0 for group in match.groups()]
            return place(*numbers) + _renamed_head(name[match.end() :], renames)
    for diffusers_name, ldm_name in UNET_TOP_NAMES.items():
        if name.startswith(diffusers_name + "."):
            return ldm_name + name[len(diffusers_name) :]
    raise ValueError(f"no LDM name for UNet tensor {name!r}")


def ldm_vae_tensors(state: dict[str, torch.Tensor], num_up_blocks: int) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict under the original names (without ``first_stage_model.``); the
    mid-block attention's linear weights become 1x1 convolution weights."""
    converted = {}
    for name, tensor in state.items():
        original = ldm_vae_name(name, num_up_blocks)
        is_attention_matrix = ".mid.attn_1." in original and original.endswith(
            ("q.weight", "k.weight", "v.weight", "proj_out.weight")
        )
        converted[original] = tensor[:, :, None, None] if is_attention_matrix else tensor
    return converted


def ldm_vae_name(name: str, num_up_blocks: int) -> str:
    """The original name of one diffusers VAE tensor (decoder up blocks are numbered in reverse)."""
    resnet, attention, other = {"conv_shortcut": "nin_shortcut"}, VAE_ATTENTION_NAMES, {}
    last = num_up_blocks - 1
    for pattern, place, renames in (
        (
            r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.",
            lambda i, j: f"encoder.down.{i}.block.{j}.",
            resnet,
        ),
        (
            r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.()",
            lambda i, _: f"encoder.down.{i}.downsample.",
            other,
        ),
        (
            r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
            lambda i, j: f"decoder.up.{last - i}.block.{j}.",
            resnet,
        ),
        (
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.()",
            lambda i, _: f"decoder.up.{last - i}.upsample.",
            other,
        ),
        (
            r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.",
            lambda side, k: f"{side}.mid.block_{k + 1}.",
            resnet,
        ),
        (
            r"(encoder|decoder)\.mid_block\.attentions\.0\.()",
            lambda side, _: f"{side}.mid.attn_1.",
            attention,
        ),
    ):
        match = re.match(pattern, name)
        if match:
            groups = [int(group) if group.isdigit() else group for group in match.groups()]
            return place(*groups) + _renamed_head(name[match.end() :], renames)
    for side in ("encoder.", "decoder."):
        if name.startswith(side + "conv_norm_out."):
            return side + "norm_out." + name.split(".")[-1]
    if re.fullmatch(r"((en|de)coder\.conv_(in|out)|quant_conv|post_quant_conv)\.(weight|bias)", name):
        return name
    raise ValueError(f"no original name for VAE tensor {name!r}")


def clip_tensors(state: dict[str, torch.Tensor], max_positions: int) -> dict[str, torch.Tensor]:
    """A CLIPTextModel state dict below ``text_model.`` (files saved with or without that prefix), plus the
    ``embeddings.position_ids`` buffer that LDM checkpoints store."""
    converted = {name.removeprefix("text_model."): tensor for name, tensor in state.items()}
    converted["embeddings.position_ids"] = torch.arange(max_positions)[None]
    return converted


def open_clip_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection state dict in the OpenCLIP text-tower layout (fused q, k, v projections,
    transposed text projection, the ``logit_scale`` OpenCLIP keeps)."""
    converted: dict[str, torch.Tensor] = {"logit_scale": torch.tensor(TRAINED_LOGIT_SCALE)}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        if name == "text_projection.weight":
            converted["text_projection"] = tensor.T
        elif name in OPEN_CLIP_TOP_NAMES:
            converted[OPEN_CLIP_TOP_NAMES[name]] = tensor
        elif match := re.fullmatch(
            r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", name
        ):
            layer, part, kind = match.groups()
            fused.setdefault(f"transformer.resblocks.{layer}.attn.in_proj_{kind}", {})[part] = tensor
        elif match := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", name):
            layer, rest = match.groups()
            converted[f"transformer.resblocks.{layer}." + _renamed_head(rest, OPEN_CLIP_LAYER_NAMES)] = tensor
        else:
            raise ValueError(f"no OpenCLIP name for text encoder tensor {name!r}")
    for name, parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"{name}: the stack lacks some of the q, k, v projections")
        converted[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return converted


def _renamed_head(rest: str, names: dict[str, str]) -> str:
    """``rest`` with its leading module name (one or two dotted parts) replaced according to ``names``."""
    for old, new in names.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a component folder: its plain ``*.safetensors`` files, or else its fp16 variant files."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    plain = [path for path in files if ".fp16." not in path.name]
    chosen = plain or files
    if not chosen:
        raise ValueError(f"{folder} holds no .safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for path in chosen:
        tensors.update(load_file(path))
    return tensors


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + name: tensor for name, tensor in tensors.items()}
