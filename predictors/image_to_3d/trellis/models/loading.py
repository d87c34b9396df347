"""Registry of TRELLIS model classes and strict loading of ``ckpts/<stem>.json`` + ``<stem>.safetensors``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

_PACKAGE = "predictors.image_to_3d.trellis.models"

# config "name" -> "module:Class". The Elastic* variants differ only in training-time memory management.
MODEL_CLASSES: dict[str, str] = {
    "SparseStructureFlowModel": f"{_PACKAGE}.sparse_structure_flow:SparseStructureFlowModel",
    "SparseStructureDecoder": f"{_PACKAGE}.sparse_structure_decoder:SparseStructureDecoder",
    "SLatFlowModel": f"{_PACKAGE}.slat_flow:SLatFlowModel",
    "ElasticSLatFlowModel": f"{_PACKAGE}.slat_flow:SLatFlowModel",
    "SLatMeshDecoder": f"{_PACKAGE}.slat_mesh_decoder:SLatMeshDecoder",
    "ElasticSLatMeshDecoder": f"{_PACKAGE}.slat_mesh_decoder:SLatMeshDecoder",
}


def model_class(name: str) -> type[nn.Module]:
    """The class registered for a config ``"name"``."""
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"unknown TRELLIS model class {name!r}; supported: {', '.join(sorted(MODEL_CLASSES))}"
        )
    module_name, class_name = MODEL_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, args: dict[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """Instantiate ``name(**args)`` on ``device`` (``"meta"`` builds the parameter layout without memory)."""
    cls = model_class(name)
    try:
        with torch.device(device):
            return cls(**args)
    except TypeError as error:
        raise ValueError(f"config args {sorted(args)} do not fit {name}: {error}") from error


def read_config(ckpt_dir: Path, stem: str) -> dict[str, Any]:
    """The ``{"name", "args"}`` config of one checkpoint."""
    path = Path(ckpt_dir) / f"{stem}.json"
    if not path.is_file():
        raise FileNotFoundError(f"model config {path} is missing")
    config = json.loads(path.read_text())
    if not isinstance(config, dict) or "name" not in config or not isinstance(config.get("args"), dict):
        raise ValueError(f"{path} must be a JSON object with 'name' and 'args'")
    return config


def _check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(
        f"{key} {list(state[key].shape)} (expected {list(expected[key].shape)})"
        for key in set(expected) & set(state)
        if state[key].shape != expected[key].shape
    )
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", reshaped),
        )
        if keys
    ]
    if problems:
        raise ValueError(f"{source} does not match {type(model).__name__}: " + "; ".join(problems))


def load_model(
    ckpt_dir: Path | str, stem: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Build the model of ``<ckpt_dir>/<stem>.json`` and load ``<stem>.safetensors`` strictly, in eval mode.

    Floating-point tensors (fp16 and fp32 parts of the official files alike) are cast to ``dtype``.
    """
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    config = read_config(ckpt_dir, stem)
    weights_path = ckpt_dir / f"{stem}.safetensors"
    if not weights_path.is_file():
        raise FileNotFoundError(f"model weights {weights_path} are missing")
    model = build_model(config["name"], config["args"], device="meta")
    state = load_file(str(weights_path), device=str(torch.device(device)))
    _check_state_dict(model, state, weights_path)
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
