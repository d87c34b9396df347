"""Render passes (mask, depth, positions, normals, face ids, uv), colour previews and UV-space rasterization.

Every image returned here is top-down (row 0 = top, the PNG convention); the rasterizer's bottom-up rows
are flipped once, in this module. UV-space passes use image layout: row 0 is v = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from extensions.raster import antialias, decode_triangle_ids, interpolate, rasterize, texture
from predictors.geometry.cameras import Cameras
from predictors.geometry.mesh import Mesh

# Views are rasterized in groups of at most this many pixels, to bound peak memory.
MAX_PIXELS_PER_CHUNK = 1 << 23
DEFAULT_GREY = (0.8, 0.8, 0.8)
AMBIENT = 0.3


@dataclass
class RenderPasses:
    """Per-view passes of N views at H x W, top-down; empty pixels hold 0 (face_ids: -1)."""

    mask: torch.Tensor  # bool [N, H, W]
    depth: torch.Tensor  # [N, H, W], distance along the camera axis (Cameras.depth)
    positions: torch.Tensor  # [N, H, W, 3], world space
    normals: torch.Tensor  # [N, H, W, 3], unit smooth vertex normals, world space
    face_ids: torch.Tensor  # int64 [N, H, W]
    uv: torch.Tensor | None  # [N, H, W, 2] when the mesh has uvs


@dataclass
class UVPasses:
    """Passes of a mesh rasterized in its UV layout, S x S in image layout (row 0 is v = 1)."""

    mask: torch.Tensor  # bool [S, S]
    face_ids: torch.Tensor  # int64 [S, S], -1 outside the charts
    positions: torch.Tensor  # [S, S, 3], world space
    normals: torch.Tensor  # [S, S, 3], unit smooth normals of the unsplit mesh


def _check_resolution(resolution: tuple[int, int]) -> tuple[int, int]:
    if len(resolution) != 2 or int(resolution[0]) < 1 or int(resolution[1]) < 1:
        raise ValueError(f"resolution must be (height, width) with positive sizes, got {resolution}")
    return int(resolution[0]), int(resolution[1])


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _view_chunks(count: int, height: int, width: int) -> list[slice]:
    step = max(1, MAX_PIXELS_PER_CHUNK // (height * width))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def _triangle_ids(rast: torch.Tensor) -> torch.Tensor:
    return decode_triangle_ids(rast[..., 3]) - 1


@dataclass
class _MeshTensors:
    vertices: torch.Tensor  # [V, 3]
    faces: torch.Tensor  # int64 [F, 3]
    normals: torch.Tensor  # [V, 3]
    uvs: torch.Tensor | None
    uv_faces: torch.Tensor | None

    @classmethod
    def from_mesh(cls, mesh: Mesh, device: torch.device | str) -> _MeshTensors:
        if mesh.has_uvs and mesh.uv_faces.shape != mesh.faces.shape:
            raise ValueError(
                f"mesh.uv_faces {mesh.uv_faces.shape} must have the shape of mesh.faces {mesh.faces.shape}"
            )

        def tensor(array: np.ndarray | None) -> torch.Tensor | None:
            return None if array is None else torch.from_numpy(np.ascontiguousarray(array)).to(device)

        return cls(
            vertices=tensor(mesh.vertices),
            faces=tensor(mesh.faces),
            normals=tensor(mesh.vertex_normals()),
            uvs=tensor(mesh.uvs) if mesh.has_uvs else None,
            uv_faces=tensor(mesh.uv_faces) if mesh.has_uvs else None,
        )


def _passes_bottom_up(
    mesh: _MeshTensors, cameras: Cameras, resolution: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, RenderPasses]:
    """Clip positions, rast and the passes of one chunk of views, still bottom-up."""
    clip = cameras.to_clip(mesh.vertices)
    rast = rasterize(clip, mesh.faces, resolution)
    face_ids = _triangle_ids(rast)
    views = len(cameras)
    # Depth is affine in world space, so interpolating it per vertex is exact; one pass for all attributes.
    attributes = torch.cat(
        [
            mesh.vertices.expand(views, -1, -1),
            mesh.normals.expand(views, -1, -1),
            cameras.depth(mesh.vertices)[..., None],
        ],
        dim=-1,
    )
    mixed = interpolate(attributes, rast, mesh.faces)  # zero where empty
    uv = interpolate(mesh.uvs, rast, mesh.uv_faces) if mesh.uvs is not None else None
    passes = RenderPasses(
        mask=face_ids >= 0,
        depth=mixed[..., 6],
        positions=mixed[..., 0:3],
        normals=_unit(mixed[..., 3:6]),
        face_ids=face_ids,
        uv=uv,
    )
    return clip, rast, passes


def _flip_rows(passes: RenderPasses) -> RenderPasses:
    """Bottom-up to top-down (the flips also make every pass contiguous)."""
    return RenderPasses(
        mask=passes.mask.flip(1),
        depth=passes.depth.flip(1),
        positions=passes.positions.flip(1),
        normals=passes.normals.flip(1),
        face_ids=passes.face_ids.flip(1),
        uv=None if passes.uv is None else passes.uv.flip(1),
    )


def render_passes(
    mesh: Mesh, cameras: Cameras, resolution: tuple[int, int], device: torch.device | str = "cpu"
) -> RenderPasses:
    """Rasterize ``mesh`` from every camera; returns top-down passes [N, H, W, ...], zero where empty."""
    height, width = _check_resolution(resolution)
    tensors = _MeshTensors.from_mesh(mesh, device)
    cameras = cameras.to(device)
    chunks = [
        _flip_rows(_passes_bottom_up(tensors, cameras[views], (height, width))[2])
        for views in _view_chunks(len(cameras), height, width)
    ]
    if len(chunks) == 1:
        return chunks[0]
    return RenderPasses(
        mask=torch.cat([c.mask for c in chunks]),
        depth=torch.cat([c.depth for c in chunks]),
        positions=torch.cat([c.positions for c in chunks]),
        normals=torch.cat([c.normals for c in chunks]),
        face_ids=torch.cat([c.face_ids for c in chunks]),
        uv=None if tensors.uvs is None else torch.cat([c.uv for c in chunks]),
    )


def _texture_rows_bottom_up(image: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Image-layout uint8 texture [H, W, 3] (row 0 = v = 1) to rasterizer layout [1, H, W, 3] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image[::-1, :, :3])).to(device).float().div(255.0)[None]


def _base_colour(mesh: Mesh, tensors: _MeshTensors, rast: torch.Tensor, passes: RenderPasses) -> torch.Tensor:
    """Unlit surface colour [B, H, W, 3] (bottom-up) from the texture, vertex colours or a default grey."""
    device = rast.device
    if mesh.texture is not None and passes.uv is not None:
        tex = _texture_rows_bottom_up(mesh.texture, device)
        return texture(tex, passes.uv.contiguous(), filter_mode="linear", boundary_mode="clamp")
    if mesh.vertex_colors is not None:
        colours = torch.from_numpy(np.ascontiguousarray(mesh.vertex_colors[:, :3])).to(device).float() / 255.0
        return interpolate(colours, rast, tensors.faces)
    grey = torch.tensor(DEFAULT_GREY, device=device)
    return grey.expand(*rast.shape[:3], 3)


def render_color(
    mesh: Mesh,
    cameras: Cameras,
    resolution: tuple[int, int],
    *,
    shading: Literal["unlit", "lambert"] = "unlit",
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """RGBA images [N, H, W, 4] in [0, 1], top-down; alpha is coverage.

    Colour comes from ``mesh.texture`` through the uvs, else ``mesh.vertex_colors``, else light grey.
    ``lambert`` adds headlight diffuse shading (ambient + diffuse towards the camera) for previews.
    """
    if shading not in ("unlit", "lambert"):
        raise ValueError(f"shading must be 'unlit' or 'lambert', got {shading!r}")
    if len(background) != 3:
        raise ValueError(f"background must be an RGB triple, got {background}")
    height, width = _check_resolution(resolution)
    tensors = _MeshTensors.from_mesh(mesh, device)
    cameras = cameras.to(device)
    images = []
    for views in _view_chunks(len(cameras), height, width):
        chunk = cameras[views]
        clip, rast, passes = _passes_bottom_up(tensors, chunk, (height, width))
        colour = _base_colour(mesh, tensors, rast, passes)
        if shading == "lambert":
            to_camera = _directions_to_camera(chunk, passes.positions)
            diffuse = (passes.normals * to_camera).sum(-1, keepdim=True).abs()
            colour = colour * (AMBIENT + (1.0 - AMBIENT) * diffuse)
        alpha = passes.mask[..., None].to(colour.dtype)
        backdrop = torch.tensor(background, dtype=colour.dtype, device=colour.device)
        rgba = torch.cat([colour * alpha + backdrop * (1.0 - alpha), alpha], dim=-1)
        rgba = antialias(rgba.contiguous(), rast, clip, tensors.faces)
        images.append(rgba.clamp(0.0, 1.0).flip(1))
    return torch.cat(images)


def _directions_to_camera(cameras: Cameras, positions: torch.Tensor) -> torch.Tensor:
    """Unit vectors from surface points [B, H, W, 3] towards their camera."""
    if cameras.orthographic:
        return (-cameras.forwards)[:, None, None, :].expand_as(positions)
    return _unit(cameras.centres[:, None, None, :] - positions)


def rasterize_uv_space(mesh: Mesh, size: int, device: torch.device | str = "cpu") -> UVPasses:
    """Rasterize the UV layout at ``size`` x ``size``; returns image-layout passes (row 0 is v = 1)."""
    if not mesh.has_uvs:
        raise ValueError("rasterize_uv_space needs a mesh with uvs and uv_faces (unwrap it first)")
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of texels, got {size}")
    size = int(size)
    tensors = _MeshTensors.from_mesh(mesh, device)
    uvs = tensors.uvs
    clip = torch.cat([uvs * 2.0 - 1.0, torch.zeros_like(uvs[:, :1]), torch.ones_like(uvs[:, :1])], dim=-1)
    rast = rasterize(clip[None], tensors.uv_faces, (size, size))
    face_ids = _triangle_ids(rast)[0]
    mask = face_ids >= 0
    positions = interpolate(tensors.vertices, rast, tensors.faces)[0]
    normals = _unit(interpolate(tensors.normals, rast, tensors.faces)[0])
    return UVPasses(
        mask=mask.flip(0), face_ids=face_ids.flip(0), positions=positions.flip(0), normals=normals.flip(0)
    )
