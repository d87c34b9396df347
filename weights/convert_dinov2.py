"""Convert a DINOv2-with-registers hub checkpoint (``dinov2_vitl14_reg4_pretrain.pth``) to transformers' layout.

``python -m weights.convert_dinov2 IN.pth OUT_DIR`` writes ``OUT_DIR/config.json`` and
``OUT_DIR/model.safetensors`` with the parameter names published in ``facebook/dinov2-with-registers-*``,
which ``transformers.Dinov2WithRegistersModel.from_pretrained`` loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

HEAD_DIM = 64  # every DINOv2 ViT (S/B/L/g) uses 64-channel heads
PATCH_SIZE = 14


def hub_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split the fused qkv of) a hub ViT state dict into transformers' published names."""
    renamed = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.mask_token": state["mask_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.register_tokens": state["register_tokens"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    for i in range(count_blocks(state)):
        hub, hf = f"blocks.{i}.", f"encoder.layer.{i}."
        for name in ("weight", "bias"):
            query, key, value = state[f"{hub}attn.qkv.{name}"].chunk(3, dim=0)
            renamed[f"{hf}attention.attention.query.{name}"] = query
            renamed[f"{hf}attention.attention.key.{name}"] = key
            renamed[f"{hf}attention.attention.value.{name}"] = value
            renamed[f"{hf}attention.output.dense.{name}"] = state[f"{hub}attn.proj.{name}"]
            for norm in ("norm1", "norm2"):
                renamed[f"{hf}{norm}.{name}"] = state[f"{hub}{norm}.{name}"]
            for fc in ("fc1", "fc2"):
                renamed[f"{hf}mlp.{fc}.{name}"] = state[f"{hub}mlp.{fc}.{name}"]
        renamed[f"{hf}layer_scale1.lambda1"] = state[f"{hub}ls1.gamma"]
        renamed[f"{hf}layer_scale2.lambda1"] = state[f"{hub}ls2.gamma"]
    used = 8 + 14 * count_blocks(state)
    if used != len(state):
        raise ValueError(
            f"hub checkpoint has {len(state)} tensors, expected {used} (unsupported ViT variant?)"
        )
    return {key: value.contiguous() for key, value in renamed.items()}


def count_blocks(state: dict[str, torch.Tensor]) -> int:
    return len({key.split(".")[1] for key in state if key.startswith("blocks.")})


def transformers_config(state: dict[str, torch.Tensor]) -> dict:
    """The ``Dinov2WithRegistersConfig`` fields implied by the hub tensors."""
    hidden = state["cls_token"].shape[-1]
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    return {
        "architectures": ["Dinov2WithRegistersModel"],
        "model_type": "dinov2_with_registers",
        "hidden_size": hidden,
        "num_hidden_layers": count_blocks(state),
        "num_attention_heads": hidden // HEAD_DIM,
        "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] // hidden,
        "image_size": grid * PATCH_SIZE,
        "patch_size": PATCH_SIZE,
        "num_register_tokens": state["register_tokens"].shape[1],
        "layer_norm_eps": 1e-6,
        "layerscale_value": 1.0,
        "hidden_act": "gelu",
        "qkv_bias": True,
        "use_swiglu_ffn": False,
    }


def convert(checkpoint: Path, out_dir: Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` for the hub checkpoint into ``out_dir``."""
    import json

    from safetensors.torch import save_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "register_tokens" not in state:
        raise ValueError(f"{checkpoint} has no register tokens; expected a DINOv2 '*_reg4' checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(hub_to_transformers(state), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(transformers_config(state), indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="hub state dict, e.g. dinov2_vitl14_reg4_pretrain.pth")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    convert(args.checkpoint, args.out_dir)
    print(f"wrote {args.out_dir / 'model.safetensors'} and config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
