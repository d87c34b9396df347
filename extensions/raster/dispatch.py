"""Backend choice for the raster API: nvdiffrast for CUDA tensors when installed, else pure PyTorch."""

from __future__ import annotations

import functools
import os
from types import ModuleType

import torch

from extensions.raster import torch_backend

_BACKEND_ENV = "RASTER_BACKEND"
_BACKEND_CHOICES = ("auto", "torch", "nvdiffrast")


@functools.cache
def _nvdiffrast_module() -> ModuleType | None:
    """The nvdiffrast wrapper module, or None when ``nvdiffrast.torch`` cannot be imported."""
    try:
        from extensions.raster import nvdiffrast_backend
    except ImportError:
        return None
    return nvdiffrast_backend


def _backend(device: torch.device | str) -> ModuleType:
    choice = os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in _BACKEND_CHOICES:
        raise ValueError(
            f"{_BACKEND_ENV}={choice!r} is not supported; use one of {', '.join(_BACKEND_CHOICES)}"
        )
    if choice == "torch" or torch.device(device).type != "cuda":
        if choice == "nvdiffrast":
            raise ValueError(f"{_BACKEND_ENV}=nvdiffrast needs CUDA tensors, got device {device}")
        return torch_backend
    native = _nvdiffrast_module()
    if native is None:
        if choice == "nvdiffrast":
            raise ValueError(f"{_BACKEND_ENV}=nvdiffrast but nvdiffrast.torch cannot be imported")
        return torch_backend
    return native


def backend_name(device: torch.device | str = "cpu") -> str:
    """``'nvdiffrast'`` or ``'torch'``: the backend that calls with tensors on ``device`` use."""
    return "nvdiffrast" if _backend(device) is not torch_backend else "torch"


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """Clip-space ``pos`` [B, V, 4] and ``tri`` [F, 3] to ``rast`` [B, H, W, 4] (see the package doc)."""
    return _backend(pos.device).rasterize(pos, tri, resolution)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Vertex attributes [V, C] or [B|1, V, C] interpolated over ``rast``: [B, H, W, C], zero where empty."""
    return _backend(rast.device).interpolate(attr, rast, tri)


def texture(
    tex: torch.Tensor, uv: torch.Tensor, filter_mode: str = "linear", boundary_mode: str = "wrap"
) -> torch.Tensor:
    """Sample ``tex`` [B|1, Ht, Wt, C] (row 0 at v = 0) at ``uv`` [B, H, W, 2]."""
    if filter_mode not in ("linear", "nearest"):
        raise ValueError(f"texture: filter_mode must be 'linear' or 'nearest', got {filter_mode!r}")
    if boundary_mode not in ("wrap", "clamp", "zero"):
        raise ValueError(f"texture: boundary_mode must be 'wrap', 'clamp' or 'zero', got {boundary_mode!r}")
    return _backend(uv.device).texture(tex, uv, filter_mode, boundary_mode)


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Silhouette antialiasing of ``color`` [B, H, W, C] (identity on the torch backend)."""
    return _backend(color.device).antialias(color, rast, pos, tri)
