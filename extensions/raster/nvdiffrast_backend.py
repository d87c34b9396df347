"""Thin wrappers over ``nvdiffrast.torch`` (CUDA only); imported lazily by the dispatcher."""

from __future__ import annotations

import nvdiffrast.torch as dr
import torch

_contexts: dict[torch.device, dr.RasterizeCudaContext] = {}


def _context(device: torch.device) -> dr.RasterizeCudaContext:
    """One cached CUDA rasterizer context per device."""
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _contexts:
        _contexts[device] = dr.RasterizeCudaContext(device=device)
    return _contexts[device]


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """nvdiffrast rasterization in instanced mode; returns ``rast`` [B, H, W, 4]."""
    pos = pos.to(torch.float32).contiguous()
    tri = tri.to(device=pos.device, dtype=torch.int32).contiguous()
    rast, _ = dr.rasterize(_context(pos.device), pos, tri, (int(resolution[0]), int(resolution[1])))
    return rast


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """nvdiffrast attribute interpolation; ``attr`` [V, C] is broadcast over the batch."""
    if attr.ndim == 2:
        attr = attr[None]
    tri = tri.to(device=rast.device, dtype=torch.int32).contiguous()
    out, _ = dr.interpolate(attr.to(torch.float32).contiguous(), rast.contiguous(), tri)
    return out


def texture(tex: torch.Tensor, uv: torch.Tensor, filter_mode: str, boundary_mode: str) -> torch.Tensor:
    """nvdiffrast texture sampling without mip-maps; a single texture is repeated over the uv batch."""
    if tex.shape[0] == 1 and uv.shape[0] > 1:
        tex = tex.expand(uv.shape[0], -1, -1, -1)
    return dr.texture(
        tex.to(torch.float32).contiguous(),
        uv.to(torch.float32).contiguous(),
        filter_mode=filter_mode,
        boundary_mode=boundary_mode,
    )


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """nvdiffrast analytic silhouette antialiasing (pass the unsplit mesh's ``pos``/``tri``)."""
    tri = tri.to(device=pos.device, dtype=torch.int32).contiguous()
    return dr.antialias(color.contiguous(), rast.contiguous(), pos.to(torch.float32).contiguous(), tri)
