"""Loading user-uploaded meshes safely into a :class:`Mesh`, and normalising them.

Supported uploads: .glb, .gltf (+ external buffers/images), .obj (+ .mtl + textures), .ply, .stl, and a
.zip holding exactly one of those with its assets. The format is taken from the content where it has a
signature (GLB, ZIP, PLY, binary STL) and from the extension otherwise.

Uploads are untrusted. Referenced files are read only through :class:`_ConfinedResolver`, which refuses URLs,
absolute paths and ``..`` and never leaves the upload's folder (for a .zip, the extraction folder). Sizes
are checked before parsing (file size, glTF array sizes, PLY/STL element counts) and again after, before
instanced scenes are expanded. A plain (non-zip) upload must sit in a folder holding only that upload's
files, since it may reference any of them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote

import numpy as np
from PIL import Image

from predictors.geometry.archives import extract_zip
from predictors.geometry.images import image_to_rgb_array
from predictors.geometry.limits import MeshLimits, check_upload_size
from predictors.geometry.mesh import Mesh

if TYPE_CHECKING:
    import trimesh

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
_DEFAULT_LIMITS = MeshLimits()
_SUPPORTED = "GLB, glTF, OBJ, PLY, STL, or a .zip holding one of them with its textures"
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_GLB_MAGIC = b"glTF"
_GLB_JSON_CHUNK = 0x4E4F534A
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_PLY_HEADER_MAX_BYTES = 1024**2
_GLTF_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_GLTF_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def load_mesh(
    path: str | Path, limits: MeshLimits = _DEFAULT_LIMITS, *, work_dir: Path | None = None
) -> Mesh:
    """Load an uploaded mesh file (or .zip) into one triangle :class:`Mesh`.

    Scene parts are placed by their node transforms and merged. UVs and the base-colour texture are kept
    when every part uses the same single texture; otherwise only geometry (and vertex colours, when every
    part has them) is kept. Vertices at identical positions are merged (UV seams survive in ``uv_faces``),
    zero-area faces and unreferenced vertices are removed. A .zip is extracted into a fresh folder under
    ``work_dir`` (a temporary folder, removed afterwards, when None). Raises ValueError for anything a user
    can get wrong: unknown format, unsafe references, limits exceeded, empty or broken geometry.
    """
    path = Path(path)
    check_upload_size(path, limits.max_file_bytes, "the mesh upload")
    kind = _detect_format(path)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        return _load_isolated(path, kind, Path(tempfile.mkdtemp(prefix="mesh-", dir=work_dir)), limits)
    with tempfile.TemporaryDirectory(prefix="mesh-") as folder:
        return _load_isolated(path, kind, Path(folder), limits)


def _load_isolated(path: Path, kind: str, folder: Path, limits: MeshLimits) -> Mesh:
    """Load from a private folder: a zip is extracted there, a single file is copied there alone, so that
    references inside the file can only resolve to files of the same upload (never to neighbours in /tmp)."""
    if kind == "zip":
        return _load_mesh_zip(path, folder, limits)
    private = folder / f"upload{path.suffix.lower()}"
    shutil.copyfile(path, private)
    return _load_mesh_file(private, kind, folder, limits)


def normalize_mesh(mesh: Mesh, extent: float = 0.9) -> tuple[Mesh, np.ndarray]:
    """Centre the bounding box at the origin and scale uniformly so that max |coordinate| == ``extent``.

    Returns the new mesh and the float64 4x4 matrix applied to homogeneous vertex positions (invert it to
    undo the normalisation).
    """
    if not extent > 0:
        raise ValueError(f"extent must be positive, got {extent}")
    vertices = mesh.vertices.astype(np.float64)
    if len(vertices) == 0:
        raise ValueError("cannot normalise a mesh without vertices")
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    half_size = float((high - low).max()) / 2.0
    if not np.isfinite(half_size) or half_size <= 0.0:
        raise ValueError("cannot normalise a mesh whose vertices all coincide")
    centre = (low + high) / 2.0
    scale = extent / half_size
    matrix = np.eye(4)
    matrix[:3, :3] *= scale
    matrix[:3, 3] = -scale * centre
    return mesh.copy_with(vertices=(vertices - centre) * scale), matrix


# --- format detection and pre-parse checks -------------------------------------------------------------


def _detect_format(path: Path) -> str:
    """One of 'glb', 'zip', 'gltf', 'obj', 'ply', 'stl', from signatures first and the extension second."""
    with open(path, "rb") as file:
        head = file.read(512)
    size = path.stat().st_size
    suffix = path.suffix.lower()
    if head.startswith(_GLB_MAGIC):
        return "glb"
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if re.match(rb"ply\r?\n", head):
        return "ply"
    if len(head) >= 84 and size == 84 + 50 * struct.unpack("<I", head[80:84])[0]:
        return "stl"
    if suffix in (".glb", ".zip"):
        raise ValueError(f"the mesh upload has a {suffix} extension but is not a {suffix[1:].upper()} file")
    if suffix in MESH_SUFFIXES:
        return suffix[1:]
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "gltf"
    if text.startswith(b"solid"):
        return "stl"
    if re.search(rb"^v\s", head, flags=re.MULTILINE):
        return "obj"
    raise ValueError(f"the mesh upload ({path.name}) is not a format we can read; upload {_SUPPORTED}")


def _precheck(path: Path, kind: str, limits: MeshLimits) -> None:
    """Reject inputs whose headers ask for more than the limits allow, before any parser allocates it."""
    if kind in ("glb", "gltf"):
        _check_gltf_header(_read_gltf_header(path, kind), limits)
    elif kind == "ply":
        _check_ply_header(path, limits)
    elif kind == "stl":
        with open(path, "rb") as file:
            head = file.read(84)
        faces = struct.unpack("<I", head[80:84])[0] if len(head) == 84 else 0
        if path.stat().st_size == 84 + 50 * faces and faces > limits.max_faces:
            raise ValueError(f"the STL file has {faces} triangles; at most {limits.max_faces} are allowed")


def _read_gltf_header(path: Path, kind: str) -> dict:
    try:
        if kind == "gltf":
            header = json.loads(path.read_bytes())
        else:
            with open(path, "rb") as file:
                _, version, _, json_length, chunk_type = struct.unpack("<4sIIII", file.read(20))
                if version != 2 or chunk_type != _GLB_JSON_CHUNK:
                    raise ValueError(
                        f"GLB version {version} or first chunk type {chunk_type:#x} is not glTF 2.0"
                    )
                header = json.loads(file.read(json_length))
    except (ValueError, struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"the {kind.upper()} file is not valid glTF 2.0: {error}") from error
    if not isinstance(header, dict):
        raise ValueError(f"the {kind.upper()} file is not valid glTF 2.0: its JSON is not an object")
    return header


def _check_gltf_header(header: dict, limits: MeshLimits) -> None:
    for section in ("buffers", "images"):
        for item in _list_of_dicts(header, section):
            uri = item.get("uri")
            if isinstance(uri, str) and not _is_base64_data_uri(uri):
                _candidate_paths(uri)
    try:
        view_bytes = sum(
            abs(int(view.get("byteLength", 0))) for view in _list_of_dicts(header, "bufferViews")
        )
        accessor_bytes = sum(
            abs(int(accessor.get("count", 0)))
            * _GLTF_COMPONENT_BYTES.get(accessor.get("componentType"), 4)
            * _GLTF_TYPE_COMPONENTS.get(accessor.get("type"), 16)
            for accessor in _list_of_dicts(header, "accessors")
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"the glTF file has malformed bufferViews or accessors: {error}") from error
    if view_bytes + accessor_bytes > limits.max_decoded_bytes:
        raise ValueError(
            f"the glTF file declares {view_bytes + accessor_bytes} bytes of arrays; "
            f"at most {limits.max_decoded_bytes} are allowed"
        )
    required = header.get("extensionsRequired")
    required = {name for name in required if isinstance(name, str)} if isinstance(required, list) else set()
    unsupported = {"EXT_meshopt_compression"} & required
    if "KHR_draco_mesh_compression" in required and importlib.util.find_spec("DracoPy") is None:
        unsupported.add("KHR_draco_mesh_compression")
    if unsupported:
        raise ValueError(
            f"the glTF file needs {', '.join(sorted(unsupported))}, which we do not support; "
            "export it without mesh compression"
        )


def _list_of_dicts(header: dict, key: str) -> list[dict]:
    items = header.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"the glTF file has a malformed '{key}' section")
    return items


def _check_ply_header(path: Path, limits: MeshLimits) -> None:
    with open(path, "rb") as file:
        head = file.read(_PLY_HEADER_MAX_BYTES)
    end = head.find(b"end_header")
    if end < 0:
        raise ValueError("the PLY file has no 'end_header' line in its first MiB")
    counts = dict(re.findall(rb"^element\s+(\w+)\s+(\d+)", head[:end], flags=re.MULTILINE))
    vertices, faces = int(counts.get(b"vertex", 0)), int(counts.get(b"face", 0))
    if vertices > limits.max_vertices or faces > limits.max_faces:
        raise ValueError(
            f"the PLY file has {vertices} vertices and {faces} faces; at most {limits.max_vertices} "
            f"vertices and {limits.max_faces} faces are allowed"
        )


# --- confined asset resolution --------------------------------------------------------------------------


def _is_base64_data_uri(uri: str) -> bool:
    return uri.startswith("data:") and ";base64," in uri[:256]


def _candidate_paths(reference: str) -> list[PurePosixPath]:
    """The reference as written and percent-decoded, as relative paths; ValueError if either is unsafe."""
    paths = []
    for candidate in dict.fromkeys((reference.strip(), unquote(reference.strip()))):
        text = candidate.replace("\\", "/")
        relative = PurePosixPath(text)
        if _URI_SCHEME.match(text) or text.startswith("/") or "\x00" in text:
            raise ValueError(
                f"the mesh references {reference!r}; only files beside it (relative paths) or base64 "
                "data: URIs are allowed, not URLs or absolute paths"
            )
        if ".." in relative.parts or not relative.parts:
            raise ValueError(
                f"the mesh references {reference!r}; paths with '..' or empty names are not allowed"
            )
        paths.append(relative)
    return paths


class _ConfinedResolver:
    """A read-only trimesh resolver that serves files under ``root`` only, relative to ``base``.

    trimesh swallows some resolver errors (a missing texture just loses the texture), so refusals are also
    recorded in ``refused`` for the caller to raise after parsing.
    """

    def __init__(self, base: Path, root: Path, max_total_bytes: int) -> None:
        self.base, self.root = base.resolve(), root.resolve()
        self.max_total_bytes = max_total_bytes
        self.bytes_read = 0
        self.refused: list[str] = []
        self.missing: list[str] = []

    def get(self, name: str) -> bytes:
        try:
            path = next((path for path in self._paths(name) if path.is_file()), None)
        except ValueError as error:
            self.refused.append(str(error))
            raise
        if path is None:
            self.missing.append(name)
            raise FileNotFoundError(name)
        self.bytes_read += path.stat().st_size
        if self.bytes_read > self.max_total_bytes:
            message = f"the mesh's referenced files exceed {self.max_total_bytes} bytes in total"
            self.refused.append(message)
            raise ValueError(message)
        return path.read_bytes()

    def __getitem__(self, name: str) -> bytes:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        try:
            return any(path.is_file() for path in self._paths(name))
        except ValueError:
            return False

    def keys(self) -> Iterator[str]:
        for folder, _, names in os.walk(self.base):
            for name in names:
                yield Path(folder, name).relative_to(self.base).as_posix()

    def namespaced(self, namespace: str) -> _ConfinedResolver:
        return _ConfinedResolver(self._paths(namespace)[0], self.root, self.max_total_bytes - self.bytes_read)

    def write(self, name: str, data: bytes) -> None:
        raise PermissionError(f"the mesh resolver is read-only (asked to write {name!r})")

    def _paths(self, name: str) -> list[Path]:
        paths = [self.base.joinpath(*relative.parts).resolve() for relative in _candidate_paths(name)]
        if not all(path.is_relative_to(self.root) for path in paths):
            raise ValueError(f"the mesh references {name!r}, which leads outside the upload's folder")
        return paths


# --- parsing ---------------------------------------------------------------------------------------------


def _load_mesh_zip(path: Path, folder: Path, limits: MeshLimits) -> Mesh:
    root = extract_zip(path, folder / "upload", limits.archive)
    candidates = sorted(
        file
        for file in root.rglob("*")
        if file.is_file()
        and file.suffix.lower() in MESH_SUFFIXES
        and "__MACOSX" not in file.relative_to(root).parts
        and not file.name.startswith(".")
    )
    if not candidates:
        raise ValueError(
            f"the .zip upload holds no mesh file; it should hold one {', '.join(MESH_SUFFIXES)} file"
        )
    if len(candidates) > 1:
        names = ", ".join(file.relative_to(root).as_posix() for file in candidates)
        raise ValueError(f"the .zip upload holds several mesh files ({names}); it should hold exactly one")
    mesh_path = candidates[0]
    check_upload_size(mesh_path, limits.max_file_bytes, "the mesh file in the .zip upload")
    return _load_mesh_file(mesh_path, _detect_format(mesh_path), root, limits)


def _load_mesh_file(path: Path, kind: str, root: Path, limits: MeshLimits) -> Mesh:
    import trimesh

    if kind == "zip":
        raise ValueError("the .zip upload holds another .zip; upload the mesh and its files in one .zip")
    _precheck(path, kind, limits)
    resolver = _ConfinedResolver(path.parent, root, limits.max_decoded_bytes)
    try:
        with open(path, "rb") as file:
            scene = trimesh.load_scene(file, file_type=kind, resolver=resolver, process=False)
    except Exception as error:
        if resolver.refused:
            raise ValueError(resolver.refused[0]) from error
        if resolver.missing:
            raise ValueError(
                f"the {kind.upper()} file references files that are not in the upload: "
                f"{', '.join(sorted(set(resolver.missing)))}"
            ) from error
        raise ValueError(
            f"the {kind.upper()} file could not be parsed: {type(error).__name__}: {error}"
        ) from error
    if resolver.refused:
        raise ValueError(resolver.refused[0])
    return _scene_to_mesh(scene, kind, limits)


# --- scene merging and cleanup ---------------------------------------------------------------------------


@dataclass
class _Part:
    """One placed triangle geometry of a scene."""

    vertices: np.ndarray  # float64 [V, 3], world space
    faces: np.ndarray  # int64 [F, 3]
    uvs: np.ndarray | None
    texture: tuple[Image.Image, np.ndarray] | None  # (image, RGBA factor in [0, 1])
    colors: np.ndarray | None  # uint8 [V, 3]


def _scene_to_mesh(scene: trimesh.Scene, kind: str, limits: MeshLimits) -> Mesh:
    import trimesh

    placed = []
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) > 0:
            placed.append((geometry, np.asarray(transform, dtype=np.float64)))
    if not placed:
        raise ValueError(f"the {kind.upper()} file holds no triangle faces (an empty mesh, points or lines)")
    # Before copying instances: faces are final, vertices are not welded yet (STL has 3 per face).
    total_vertices = sum(len(geometry.vertices) for geometry, _ in placed)
    total_faces = sum(len(geometry.faces) for geometry, _ in placed)
    if total_faces > limits.max_faces or total_vertices > limits.max_vertices + 3 * limits.max_faces:
        _check_counts(total_vertices, total_faces, limits, f"the {kind.upper()} file")
    return _merge_and_clean([_place(geometry, transform, limits) for geometry, transform in placed], limits)


def _check_counts(vertices: int, faces: int, limits: MeshLimits, what: str) -> None:
    if vertices > limits.max_vertices or faces > limits.max_faces:
        raise ValueError(
            f"{what} has {vertices} vertices and {faces} faces (all scene instances counted); at most "
            f"{limits.max_vertices} vertices and {limits.max_faces} faces are allowed"
        )


def _place(geometry: trimesh.Trimesh, transform: np.ndarray, limits: MeshLimits) -> _Part:
    """Apply a node transform to a trimesh geometry and pull out the attributes we keep."""
    from trimesh.visual import ColorVisuals

    vertices = np.asarray(geometry.vertices, dtype=np.float64)
    faces = np.asarray(geometry.faces, dtype=np.int64)
    if not np.isfinite(vertices).all():
        raise ValueError("the mesh has NaN or infinite vertex coordinates")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"the mesh has face indices outside its {len(vertices)} vertices")
    placed = vertices @ transform[:3, :3].T + transform[:3, 3]
    if np.linalg.det(transform[:3, :3]) < 0:  # a mirroring transform flips the winding
        faces = faces[:, ::-1]
    visual = geometry.visual
    uvs, texture, colors = None, None, None
    uv = getattr(visual, "uv", None)
    image_and_factor = _base_color_texture(getattr(visual, "material", None), limits)
    if uv is not None and len(uv) == len(vertices) and image_and_factor is not None:
        uvs, texture = np.asarray(uv, dtype=np.float64)[:, :2], image_and_factor
    if isinstance(visual, ColorVisuals) and visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.uint8)[:, :3]
    return _Part(placed, faces, uvs, texture, colors)


def _base_color_texture(material: object, limits: MeshLimits) -> tuple[Image.Image, np.ndarray] | None:
    """The material's base-colour image (size checked, not decoded) and its RGBA factor in [0, 1].

    The factor is glTF's baseColorFactor; OBJ's Kd is ignored, as most viewers do with a diffuse map.
    """
    image = getattr(material, "baseColorTexture", None)
    factor = getattr(material, "baseColorFactor", None)
    if image is None:
        image, factor = getattr(material, "image", None), None
    if not isinstance(image, Image.Image):
        return None
    width, height = image.size
    if width * height > limits.max_texture_pixels:
        raise ValueError(
            f"the mesh's texture is {width}x{height} pixels; at most {limits.max_texture_pixels} are allowed"
        )
    return image, np.ones(4) if factor is None else np.asarray(factor, dtype=np.float64) / 255.0


def _merge_and_clean(parts: list[_Part], limits: MeshLimits) -> Mesh:
    offsets = np.cumsum([0] + [len(part.vertices) for part in parts])
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        vertices = np.concatenate([part.vertices for part in parts]).astype(np.float32)
    if not np.isfinite(vertices).all():
        raise ValueError("the mesh's vertex coordinates overflow after applying its scene transforms")
    faces = np.concatenate([part.faces + offset for part, offset in zip(parts, offsets[:-1], strict=True)])
    colors = None
    if all(part.colors is not None for part in parts):
        colors = np.concatenate([part.colors for part in parts])
    uvs, uv_faces, texture = None, None, _shared_texture(parts)
    if texture is not None:
        uvs = np.concatenate([part.uvs for part in parts if part.uvs is not None]).astype(np.float32)
        if not np.isfinite(uvs).all():
            raise ValueError("the mesh has NaN or infinite texture coordinates")
        uv_faces = faces.copy()

    faces = _weld_identical_vertices(vertices, colors)[faces]
    keep = _non_degenerate(vertices, faces)
    if not keep.any():
        raise ValueError("every face of the mesh has zero area")
    faces = faces[keep]
    vertices, faces, used = _compact(vertices, faces)
    if colors is not None:
        colors = colors[used]
    if uv_faces is not None:
        uvs, uv_faces, _ = _compact(uvs, uv_faces[keep])
    _check_counts(len(vertices), len(faces), limits, "the mesh")
    return Mesh(vertices, faces, uvs=uvs, uv_faces=uv_faces, texture=texture, vertex_colors=colors)


def _shared_texture(parts: list[_Part]) -> np.ndarray | None:
    """The texture pixels when every part has UVs and the same image and factor (by value), else None."""
    textures = [part.texture for part in parts if part.uvs is not None and part.texture is not None]
    if len(textures) < len(parts):
        return None
    first_image, first_factor = textures[0]
    first_pixels = None
    for image, factor in textures[1:]:
        if not np.array_equal(factor, first_factor) or image.size != first_image.size:
            return None
        if image is first_image:
            continue
        first_pixels = _decoded(first_image) if first_pixels is None else first_pixels
        if not np.array_equal(_decoded(image), first_pixels):
            return None
    return _texture_pixels(first_image, first_factor)


def _decoded(image: Image.Image) -> np.ndarray:
    try:
        return image_to_rgb_array(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"the mesh's base-colour texture could not be decoded: {error}") from error


def _texture_pixels(image: Image.Image, factor: np.ndarray) -> np.ndarray:
    """The texture as uint8 RGB [H, W, 3] (row 0 = top = v 1), multiplied by the factor in linear space."""
    pixels = _decoded(image)
    if np.allclose(factor[:3], 1.0):
        return pixels
    levels = _srgb_to_linear(np.arange(256) / 255.0)[:, None] * factor[:3]  # [256, 3] lookup table
    table = np.round(_linear_to_srgb(levels) * 255.0).astype(np.uint8)
    return np.stack([table[pixels[..., channel], channel] for channel in range(3)], axis=-1)


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


def _weld_identical_vertices(vertices: np.ndarray, colors: np.ndarray | None) -> np.ndarray:
    """Map every vertex to the first vertex with exactly the same position (and colour)."""
    keys = np.ascontiguousarray(vertices + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    if colors is not None:
        keys = np.concatenate([keys, colors.astype(np.uint32)], axis=1)
    order = np.lexsort(keys.T[::-1])  # stable: equal keys stay in index order
    ordered = keys[order]
    starts_group = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)]
    group = np.cumsum(starts_group) - 1
    representative = np.empty(len(keys), dtype=np.int64)
    representative[order] = order[np.flatnonzero(starts_group)][group]
    return representative


def _non_degenerate(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mask of faces with three distinct corners and non-zero area."""
    corners = vertices.astype(np.float64)[faces]
    doubled_area = np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return distinct & (doubled_area > 0.0)


def _compact(values: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop rows of ``values`` no face uses, keeping the order; return (values, faces, kept row indices)."""
    is_used = np.zeros(len(values), dtype=bool)
    is_used[faces] = True
    used = np.flatnonzero(is_used)
    remap = np.cumsum(is_used) - 1
    return values[used], remap[faces], used
