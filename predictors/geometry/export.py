"""GLB export (glTF 2.0 binary, y-up) with a PBR material, smooth normals and, where present, a texture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from predictors.geometry.mesh import Mesh

# Linear base colour of meshes that have neither a texture nor vertex colours.
PLAIN_GREY = (0.6, 0.6, 0.6, 1.0)


def export_glb(mesh: Mesh, path: Path) -> Path:
    """Write ``mesh`` as a GLB file at ``path`` and return the path.

    The material is PBR metallic-roughness with metallicFactor 0 and roughnessFactor 1. Its base colour is
    ``mesh.texture`` (needs UVs) when present, else the vertex colours (COLOR_0, converted from sRGB to the
    linear values glTF expects) when present, else plain grey. Positions are split along UV seams into a
    single vertex buffer; normals are smooth vertex normals of the unsplit mesh, so seams do not show in
    shading. A closed mesh whose faces wind inwards (negative volume) is flipped to wind outwards.
    """
    import trimesh
    from PIL import Image
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    if len(mesh.faces) == 0:
        raise ValueError("export_glb: the mesh has no faces")
    if mesh.texture is not None and not mesh.has_uvs:
        raise ValueError("export_glb: a textured mesh needs uvs and uv_faces")
    mesh = orient_outward(mesh)
    position_index, uv_index, split_faces = _split_seams(mesh)

    coloured = mesh.texture is not None or mesh.vertex_colors is not None
    material = PBRMaterial(
        name="material",
        baseColorFactor=(1.0, 1.0, 1.0, 1.0) if coloured else PLAIN_GREY,
        baseColorTexture=None if mesh.texture is None else Image.fromarray(mesh.texture, mode="RGB"),
        metallicFactor=0.0,
        roughnessFactor=1.0,
    )
    uvs = None if uv_index is None else mesh.uvs[uv_index]
    visual = TextureVisuals(uv=uvs, material=material)
    if mesh.texture is None and mesh.vertex_colors is not None:
        linear = srgb_to_linear(mesh.vertex_colors[position_index] / 255.0)
        rgba = np.concatenate([linear, np.ones_like(linear[:, :1])], axis=1)
        visual.vertex_attributes["color"] = np.round(rgba * 255.0).astype(np.uint8)

    geometry = trimesh.Trimesh(
        vertices=mesh.vertices[position_index],
        faces=split_faces,
        vertex_normals=mesh.vertex_normals()[position_index],
        visual=visual,
        process=False,
    )
    data = trimesh.Scene(geometry).export(file_type="glb", include_normals=True)
    path = Path(path)
    path.write_bytes(data)
    return path


def orient_outward(mesh: Mesh) -> Mesh:
    """``mesh`` with all faces reversed if it is closed and its faces wind inwards, else ``mesh`` itself."""
    if not is_closed(mesh.faces):
        return mesh
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    signed_volume = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0
    if signed_volume >= 0:
        return mesh
    uv_faces = None if mesh.uv_faces is None else mesh.uv_faces[:, ::-1]
    return mesh.copy_with(faces=mesh.faces[:, ::-1], uv_faces=uv_faces)


def is_closed(faces: np.ndarray) -> bool:
    """Whether every directed edge is matched by exactly one opposite edge (a closed, oriented surface)."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    forward = np.unique(directed, axis=0)
    if len(forward) != len(directed):
        return False
    backward = np.unique(directed[:, ::-1], axis=0)
    return bool(np.array_equal(forward, backward))


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted (IEC 61966-2-1), for values in [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _split_seams(mesh: Mesh) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One vertex per distinct (position, uv) corner pair: (position index, uv index or None, faces)."""
    if not mesh.has_uvs:
        return np.arange(len(mesh.vertices)), None, mesh.faces
    if mesh.uv_faces.shape != mesh.faces.shape:
        raise ValueError(
            f"export_glb: uv_faces must have the shape of faces {mesh.faces.shape}, got {mesh.uv_faces.shape}"
        )
    pairs = np.stack([mesh.faces.ravel(), mesh.uv_faces.ravel()], axis=1)
    unique_pairs, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique_pairs[:, 0], unique_pairs[:, 1], inverse.reshape(mesh.faces.shape)
