"""The in-memory triangle mesh every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh in world space (right-handed, y-up).

    ``uvs``/``uv_faces`` form a second index buffer with the same face count and corner order as
    ``faces`` (seams split UV vertices, not positions). ``texture`` is an sRGB uint8 [H, W, 3] image in
    image layout: row 0 is the top, i.e. v = 1 (glTF/PIL convention, UV origin bottom-left).
    """

    vertices: np.ndarray  # float32 [V, 3]
    faces: np.ndarray  # int64 [F, 3], counter-clockwise seen from outside
    uvs: np.ndarray | None = None  # float32 [T, 2] in [0, 1]
    uv_faces: np.ndarray | None = None  # int64 [F, 3] into uvs
    texture: np.ndarray | None = None  # uint8 [H, W, 3]
    vertex_colors: np.ndarray | None = None  # uint8 [V, 3], sRGB like the texture

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32)
        if self.uv_faces is not None:
            self.uv_faces = np.ascontiguousarray(self.uv_faces, dtype=np.int64)

    @property
    def has_uvs(self) -> bool:
        return self.uvs is not None and self.uv_faces is not None

    def copy_with(self, **changes: object) -> Mesh:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def vertex_normals(self) -> np.ndarray:
        """Area-weighted unit vertex normals [V, 3] (zero-area neighbourhoods give +y)."""
        corners = self.vertices[self.faces]
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        normals = np.zeros_like(self.vertices)
        for corner in range(3):
            np.add.at(normals, self.faces[:, corner], face_normals)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        fallback = np.broadcast_to(np.array([0.0, 1.0, 0.0], dtype=np.float32), normals.shape)
        return np.where(length > 1e-20, normals / np.maximum(length, 1e-20), fallback).astype(np.float32)
