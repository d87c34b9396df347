"""Safe mesh loading: every format, textures and their orientation, scenes, unsafe uploads, limits."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from predictors.geometry.archives import extract_zip
from predictors.geometry.limits import ArchiveLimits, MeshLimits
from predictors.geometry.mesh import Mesh
from predictors.geometry.mesh_io import load_mesh, normalize_mesh

RED, BLUE = (255, 0, 0), (0, 0, 255)
# A unit quad in the z = 0 plane; its top edge (y = 1) must show the top of the texture.
QUAD_POSITIONS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
QUAD_INDICES = np.array([0, 1, 2, 0, 2, 3], np.uint16)
# glTF texture coordinates: origin at the TOP-left of the image (spec), so y = 1 gets t = 0.
QUAD_GLTF_TEXCOORDS = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)


# --- hand-written files (independent of trimesh's exporters) ----------------------------------------------


def top_red_bottom_blue_png(size: int = 32) -> bytes:
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[: size // 2], pixels[size // 2 :] = RED, BLUE
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def gltf_document(
    positions: np.ndarray,
    indices: np.ndarray,
    texcoords: np.ndarray | None = None,
    png: bytes | None = None,
    base_color_factor: list[float] | None = None,
) -> tuple[dict, bytes]:
    """A minimal glTF 2.0 document (one mesh, one node) and its binary buffer, laid out per the spec."""
    blob = bytearray()
    document: dict = {"asset": {"version": "2.0"}, "bufferViews": [], "accessors": []}

    def add_view(data: bytes) -> int:
        document["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob.extend(data + b"\0" * (-len(data) % 4))
        return len(document["bufferViews"]) - 1

    def add_accessor(array: np.ndarray, component_type: int, kind: str) -> int:
        accessor = {"bufferView": add_view(array.tobytes()), "componentType": component_type}
        accessor.update(count=len(array), type=kind)
        if kind == "VEC3":
            accessor.update(min=array.min(0).tolist(), max=array.max(0).tolist())
        document["accessors"].append(accessor)
        return len(document["accessors"]) - 1

    attributes = {"POSITION": add_accessor(positions.astype(np.float32), 5126, "VEC3")}
    primitive: dict = {
        "attributes": attributes,
        "indices": add_accessor(indices.astype(np.uint16), 5123, "SCALAR"),
    }
    if texcoords is not None:
        attributes["TEXCOORD_0"] = add_accessor(texcoords.astype(np.float32), 5126, "VEC2")
    if png is not None:
        document["images"] = [{"bufferView": add_view(png), "mimeType": "image/png"}]
        document["textures"] = [{"source": 0}]
        pbr: dict = {"baseColorTexture": {"index": 0}}
        if base_color_factor is not None:
            pbr["baseColorFactor"] = base_color_factor
        document["materials"] = [{"pbrMetallicRoughness": pbr}]
        primitive["material"] = 0
    document.update(
        meshes=[{"primitives": [primitive]}], nodes=[{"mesh": 0}], scenes=[{"nodes": [0]}], scene=0
    )
    document["buffers"] = [{"byteLength": len(blob)}]
    return document, bytes(blob)


def write_glb(path: Path, document: dict, blob: bytes) -> Path:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = (
        struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(blob), 0x004E4942) + blob
    )
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
    return path


def write_gltf(folder: Path, document: dict, blob: bytes, buffer_uri: str = "mesh.bin") -> Path:
    """A .gltf whose buffer is the external file ``buffer_uri`` (written beside it when relative)."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {**document, "buffers": [{"uri": buffer_uri, "byteLength": len(blob)}]}
    (folder / "mesh.bin").write_bytes(blob)
    path = folder / "mesh.gltf"
    path.write_text(json.dumps(document))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def texel(mesh: Mesh, u: float, v: float) -> np.ndarray:
    """Nearest texel under the Mesh convention: row 0 is the top of the image, i.e. v = 1."""
    height, width = mesh.texture.shape[:2]
    row = min(int((1.0 - v) * height), height - 1)
    return mesh.texture[row, min(int(u * width), width - 1)]


def signed_volume(mesh: Mesh) -> float:
    """Positive for a closed mesh whose faces wind counter-clockwise seen from outside."""
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    return float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0)


def odd_sphere() -> trimesh.Trimesh:
    """An icosphere moved and stretched so that its bounding box is not symmetric about the origin."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    sphere.apply_scale([1.0, 2.0, 3.0])
    sphere.apply_translation([0.5, -1.0, 2.0])
    return sphere


# --- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".glb", ".gltf", ".obj", ".ply", ".stl"])
def test_every_format_round_trips(tmp_path: Path, suffix: str) -> None:
    source = odd_sphere()
    path = tmp_path / "upload" / f"mesh{suffix}"
    path.parent.mkdir()
    source.export(path)
    if suffix == ".gltf":  # external buffers travel with a .gltf only inside a zip
        members = {item.name: item.read_bytes() for item in path.parent.iterdir()}
        path = write_zip(tmp_path / "upload.zip", members)
    mesh = load_mesh(path)
    assert len(mesh.vertices) == len(source.vertices)
    assert len(mesh.faces) == len(source.faces)
    np.testing.assert_allclose([mesh.vertices.min(0), mesh.vertices.max(0)], source.bounds, atol=1e-5)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int64
    assert signed_volume(mesh) == pytest.approx(source.volume, rel=1e-4)


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    mesh = load_mesh(write_glb(tmp_path / "actually_a_glb.obj", document, blob))
    assert mesh.faces.shape == (2, 3)
    (tmp_path / "fake.glb").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="not a GLB file"):
        load_mesh(tmp_path / "fake.glb")


def test_zip_with_one_mesh_loads(tmp_path: Path) -> None:
    source = odd_sphere()
    members = {"__MACOSX/._mesh.ply": b"junk", "folder/mesh.ply": source.export(file_type="ply")}
    mesh = load_mesh(write_zip(tmp_path / "upload.zip", members), work_dir=tmp_path)
    assert (len(mesh.vertices), len(mesh.faces)) == (len(source.vertices), len(source.faces))


# --- textures ---------------------------------------------------------------------------------------------


def test_glb_texture_keeps_uvs_and_orientation(tmp_path: Path) -> None:
    document, blob = gltf_document(
        QUAD_POSITIONS, QUAD_INDICES, QUAD_GLTF_TEXCOORDS, top_red_bottom_blue_png()
    )
    mesh = load_mesh(write_glb(tmp_path / "quad.glb", document, blob))
    assert mesh.has_uvs and mesh.texture.shape == (32, 32, 3) and mesh.texture.dtype == np.uint8
    assert tuple(texel(mesh, 0.5, 0.9)) == RED
    assert tuple(texel(mesh, 0.5, 0.1)) == BLUE
    # The top edge of the quad (y = 1) samples the top (red) half; the bottom edge the blue half.
    corner_uvs = mesh.uvs[mesh.uv_faces].reshape(-1, 2)
    corner_y = mesh.vertices[mesh.faces].reshape(-1, 3)[:, 1]
    np.testing.assert_allclose(corner_uvs[:, 1], corner_y, atol=1e-6)


def test_base_color_factor_multiplies_in_linear_space(tmp_path: Path) -> None:
    white = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 255, 255)).save(white, format="PNG")
    document, blob = gltf_document(
        QUAD_POSITIONS, QUAD_INDICES, QUAD_GLTF_TEXCOORDS, white.getvalue(), [0.5, 1, 1, 1]
    )
    mesh = load_mesh(write_glb(tmp_path / "quad.glb", document, blob))
    expected_red = round((1.055 * 0.5 ** (1 / 2.4) - 0.055) * 255)  # sRGB encoding of linear 0.5
    assert abs(int(mesh.texture[0, 0, 0]) - expected_red) <= 1
    assert tuple(mesh.texture[0, 0, 1:]) == (255, 255)


OBJ_QUAD = """mtllib quad.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
usemtl painted
f 1/1 2/2 3/3 4/4
"""
MTL = "newmtl painted\nKd 1 1 1\nmap_Kd textures/paint.png\n"


def test_obj_mtl_png_zip_keeps_texture(tmp_path: Path) -> None:
    members = {
        "quad.obj": OBJ_QUAD.encode(),
        "quad.mtl": MTL.encode(),
        "textures/paint.png": top_red_bottom_blue_png(),
    }
    mesh = load_mesh(write_zip(tmp_path / "quad.zip", members))
    assert mesh.faces.shape == (2, 3) and mesh.has_uvs
    # OBJ's vt origin is the bottom-left of the image: the quad's top edge has v = 1 and shows red.
    assert tuple(texel(mesh, 0.5, 0.9)) == RED and tuple(texel(mesh, 0.5, 0.1)) == BLUE
    np.testing.assert_allclose(mesh.uvs[mesh.uv_faces], mesh.vertices[mesh.faces][..., :2], atol=1e-6)


def test_uv_seams_survive_while_positions_are_welded(tmp_path: Path) -> None:
    # Two triangles share the edge (1,0,0)-(0,1,0) in space but not in UV space.
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvt .4 0\nvt 0 .4\nvt 1 1\nvt .6 1\nvt 1 .6\n"
    obj += "mtllib m.mtl\nusemtl painted\nf 1/1 2/2 3/3\nf 4/4 3/5 2/6\n"
    mtl = "newmtl painted\nmap_Kd paint.png\n"
    members = {"m.obj": obj.encode(), "m.mtl": mtl.encode(), "paint.png": top_red_bottom_blue_png()}
    mesh = load_mesh(write_zip(tmp_path / "seam.zip", members))
    assert len(mesh.vertices) == 4 and len(mesh.uvs) == 6
    expected = {(0, 0, 0): (0, 0), (1, 0, 0): (0.4, 0), (0, 1, 0): (0, 0.4), (1, 1, 0): (1, 1)}
    expected_second = {(1, 1, 0): (1, 1), (0, 1, 0): (0.6, 1), (1, 0, 0): (1, 0.6)}
    for face, uv_face in zip(mesh.faces, mesh.uv_faces, strict=True):
        table = expected if (1, 1, 0) not in {tuple(mesh.vertices[i]) for i in face} else expected_second
        for corner, uv_corner in zip(face, uv_face, strict=True):
            np.testing.assert_allclose(mesh.uvs[uv_corner], table[tuple(mesh.vertices[corner].tolist())])


def test_several_textures_drop_uvs_but_keep_geometry(tmp_path: Path) -> None:
    obj = "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\n"
    obj += "usemtl a\nf 1/1 2/2 3/3\nusemtl b\nf 4/4 3/3 2/2\n"
    mtl = "newmtl a\nmap_Kd a.png\nnewmtl b\nmap_Kd b.png\n"
    other = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(other, format="PNG")
    members = {
        "m.obj": obj.encode(),
        "m.mtl": mtl.encode(),
        "a.png": top_red_bottom_blue_png(),
        "b.png": other.getvalue(),
    }
    mesh = load_mesh(write_zip(tmp_path / "two.zip", members))
    assert mesh.faces.shape == (2, 3) and not mesh.has_uvs and mesh.texture is None


def test_materials_sharing_one_image_keep_the_texture(tmp_path: Path) -> None:
    obj = "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\n"
    obj += "usemtl a\nf 1/1 2/2 3/3\nusemtl b\nf 4/4 3/3 2/2\n"
    mtl = "newmtl a\nmap_Kd paint.png\nnewmtl b\nmap_Kd copy.png\n"
    png = top_red_bottom_blue_png()
    members = {"m.obj": obj.encode(), "m.mtl": mtl.encode(), "paint.png": png, "copy.png": png}
    mesh = load_mesh(write_zip(tmp_path / "shared.zip", members))
    assert mesh.faces.shape == (2, 3) and mesh.has_uvs and tuple(texel(mesh, 0.5, 0.9)) == RED
    np.testing.assert_allclose(mesh.uvs[mesh.uv_faces], mesh.vertices[mesh.faces][..., :2], atol=1e-6)


def test_vertex_colors_are_kept(tmp_path: Path) -> None:
    source = trimesh.creation.box()
    colors = np.arange(len(source.vertices) * 3, dtype=np.uint8).reshape(-1, 3) * 7
    source.visual.vertex_colors = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], 1)
    path = tmp_path / "upload" / "box.ply"
    path.parent.mkdir()
    source.export(path)
    mesh = load_mesh(path)
    expected = {tuple(v): tuple(c) for v, c in zip(source.vertices.tolist(), colors.tolist(), strict=True)}
    assert {
        tuple(v): tuple(c) for v, c in zip(mesh.vertices.tolist(), mesh.vertex_colors.tolist(), strict=True)
    } == (expected)


def test_texture_pixel_limit(tmp_path: Path) -> None:
    document, blob = gltf_document(
        QUAD_POSITIONS, QUAD_INDICES, QUAD_GLTF_TEXCOORDS, top_red_bottom_blue_png(64)
    )
    path = write_glb(tmp_path / "quad.glb", document, blob)
    with pytest.raises(ValueError, match="texture is 64x64"):
        load_mesh(path, MeshLimits(max_texture_pixels=32 * 32))


# --- scenes -----------------------------------------------------------------------------------------------


def test_multi_part_scene_applies_transforms_and_merges(tmp_path: Path) -> None:
    scene = trimesh.Scene()
    box = trimesh.creation.box(extents=[1, 1, 1])
    scene.add_geometry(box, node_name="a", transform=trimesh.transformations.translation_matrix([3, 0, 0]))
    scene.add_geometry(box, node_name="b", geom_name="box", transform=np.diag([2.0, 1.0, 1.0, 1.0]))
    mirrored = trimesh.transformations.translation_matrix([0, 0, -5]) @ np.diag([-1.0, 1.0, 1.0, 1.0])
    scene.add_geometry(trimesh.creation.icosphere(subdivisions=2), node_name="c", transform=mirrored)
    path = tmp_path / "upload" / "scene.glb"
    path.parent.mkdir()
    scene.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12 + 12 + 320 and len(mesh.vertices) == 8 + 8 + 162
    np.testing.assert_allclose(mesh.vertices.min(0), [-1.0, -1.0, -6.0], atol=1e-5)
    np.testing.assert_allclose(mesh.vertices.max(0), [3.5, 1.0, 0.5], atol=1e-5)
    # Every part, the mirrored sphere included, still winds counter-clockwise from outside.
    expected_volume = 1.0 + 2.0 + trimesh.creation.icosphere(subdivisions=2).volume
    assert signed_volume(mesh) == pytest.approx(expected_volume, rel=1e-4)


def test_instanced_scene_is_counted_before_expansion(tmp_path: Path) -> None:
    scene = trimesh.Scene()
    sphere = trimesh.creation.icosphere(subdivisions=2)
    for index in range(50):
        translation = trimesh.transformations.translation_matrix([3.0 * index, 0, 0])
        scene.add_geometry(sphere, geom_name="sphere", node_name=f"n{index}", transform=translation)
    path = tmp_path / "upload" / "many.glb"
    path.parent.mkdir()
    scene.export(path)
    assert len(load_mesh(path).faces) == 50 * 320
    with pytest.raises(ValueError, match="16000 faces"):
        load_mesh(path, MeshLimits(max_faces=10_000))


# --- external files and confinement -----------------------------------------------------------------------


def test_a_lone_gltf_cannot_read_files_beside_it(tmp_path: Path) -> None:
    # A single uploaded file is loaded from a private folder: neighbours in its directory are out of reach.
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    with pytest.raises(ValueError, match="not in the upload"):
        load_mesh(write_gltf(tmp_path / "upload", document, blob))


def test_gltf_with_external_buffer_in_zip(tmp_path: Path) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    document["buffers"] = [{"uri": "data/quad%20buffer.bin", "byteLength": len(blob)}]
    members = {"scene/quad.gltf": json.dumps(document).encode(), "scene/data/quad buffer.bin": blob}
    assert load_mesh(write_zip(tmp_path / "quad.zip", members)).faces.shape == (2, 3)


@pytest.mark.parametrize(
    "uri",
    [
        "../secret.bin",
        "%2e%2e/secret.bin",
        "SECRET_ABSOLUTE",
        "/etc/passwd",
        "http://example.com/x.bin",
        "file:///x.bin",
    ],
)
def test_gltf_buffer_outside_the_folder_is_rejected(tmp_path: Path, uri: str) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(blob)  # a valid buffer, so following the reference would "work"
    path = write_gltf(tmp_path / "upload", document, blob, uri.replace("SECRET_ABSOLUTE", str(secret)))
    with pytest.raises(ValueError, match="references"):
        load_mesh(path)


def test_symlink_out_of_the_folder_is_rejected(tmp_path: Path) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    path = write_gltf(tmp_path / "upload", document, blob, "link.bin")
    (tmp_path / "secret.bin").write_bytes(blob)
    os.symlink(tmp_path / "secret.bin", tmp_path / "upload" / "link.bin")
    with pytest.raises(ValueError, match="not in the upload"):
        load_mesh(path)


def test_texture_and_mtl_outside_the_folder_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(top_red_bottom_blue_png())
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES, QUAD_GLTF_TEXCOORDS)
    document.update(images=[{"uri": "../secret.png"}], textures=[{"source": 0}])
    document["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    document["meshes"][0]["primitives"][0]["material"] = 0
    with pytest.raises(ValueError, match=r"references '\.\./secret\.png'"):
        load_mesh(write_gltf(tmp_path / "gltf", document, blob))
    (tmp_path / "secret.mtl").write_text(MTL)
    folder = tmp_path / "obj"
    folder.mkdir()
    (folder / "quad.obj").write_text(OBJ_QUAD.replace("mtllib quad.mtl", "mtllib ../secret.mtl"))
    with pytest.raises(ValueError, match=r"references '\.\./secret\.mtl'"):
        load_mesh(folder / "quad.obj")


def test_missing_buffer_is_named(tmp_path: Path) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    path = write_gltf(tmp_path / "upload", document, blob, "elsewhere.bin")
    with pytest.raises(ValueError, match=r"elsewhere\.bin"):
        load_mesh(path)


# --- zip archives -----------------------------------------------------------------------------------------


def test_zip_slip_is_rejected_and_nothing_escapes(tmp_path: Path) -> None:
    for name in ("../evil.obj", "a/../../evil.obj", "/tmp/evil.obj", "C:\\evil.obj", "..\\evil.obj"):
        archive = write_zip(tmp_path / "slip.zip", {"ok.txt": b"fine", name: b"v 0 0 0\n"})
        with pytest.raises(ValueError, match=r"absolute path|'\.\.'"):
            extract_zip(archive, tmp_path / "out" / "x")
        with pytest.raises(ValueError):
            load_mesh(archive)
    assert not (tmp_path / "evil.obj").exists() and not (tmp_path / "out" / "x" / "ok.txt").exists()


def test_zip_bomb_is_rejected_by_ratio(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "bomb.zip", {"mesh.obj": b"\0" * (4 * 1024**2)})
    assert os.path.getsize(archive) < 40_000
    with pytest.raises(ValueError, match="zip bomb"):
        extract_zip(archive, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_zip_total_size_and_member_count_limits(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "many.zip", {f"f{i}.txt": os.urandom(100) for i in range(10)})
    with pytest.raises(ValueError, match="10 entries"):
        extract_zip(archive, tmp_path / "a", ArchiveLimits(max_members=5))
    with pytest.raises(ValueError, match="expands to more than 500 bytes"):
        extract_zip(archive, tmp_path / "b", ArchiveLimits(max_total_bytes=500))
    assert len(list(extract_zip(archive, tmp_path / "c").iterdir())) == 10
    with pytest.raises(ValueError, match="10 entries"):
        load_mesh(archive, MeshLimits(archive=ArchiveLimits(max_members=5)))


def test_zip_symlink_and_encrypted_members_are_rejected(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("textures/paint.png")
    link.external_attr = 0o120777 << 16  # a symbolic link whose target is the member's data
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as archive:
        archive.writestr(link, b"/etc/passwd")
    with pytest.raises(ValueError, match="symbolic link"):
        extract_zip(tmp_path / "link.zip", tmp_path / "link")
    # zipfile cannot write encrypted members, so set the "encrypted" flag bit in both headers by hand.
    raw = bytearray(write_zip(tmp_path / "secret.zip", {"mesh.obj": b"v 0 0 0\n"}).read_bytes())
    raw[6] |= 0x1
    raw[raw.rfind(b"PK\x01\x02") + 8] |= 0x1
    (tmp_path / "secret.zip").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="encrypted"):
        extract_zip(tmp_path / "secret.zip", tmp_path / "secret")


def test_zip_member_larger_than_declared_is_cut_off(tmp_path: Path) -> None:
    data = os.urandom(5000)
    path = write_zip(tmp_path / "lie.zip", {"mesh.obj": data})
    raw = bytearray(path.read_bytes())
    # Shrink the declared uncompressed size (local header offset 22, central directory offset 24) to 100.
    struct.pack_into("<I", raw, 22, 100)
    central = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 100)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        extract_zip(path, tmp_path / "out")
    written = tmp_path / "out" / "mesh.obj"
    assert not written.exists() or written.stat().st_size <= 100


def test_zip_with_no_mesh_or_several_meshes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no mesh file"):
        load_mesh(write_zip(tmp_path / "none.zip", {"readme.txt": b"hello"}))
    box = trimesh.creation.box()
    members = {"a.stl": box.export(file_type="stl"), "b/c.ply": box.export(file_type="ply")}
    with pytest.raises(ValueError, match=r"several mesh files \(a.stl, b/c.ply\)"):
        load_mesh(write_zip(tmp_path / "two.zip", members))


def test_work_dir_receives_the_extraction(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", {"m.stl": trimesh.creation.box().export(file_type="stl")})
    load_mesh(archive, work_dir=tmp_path / "work")
    assert list((tmp_path / "work").glob("mesh-*/upload/m.stl"))


# --- bad geometry and limits ------------------------------------------------------------------------------


def write_text(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / "upload" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_bad_geometry_is_rejected(tmp_path: Path) -> None:
    cases = {
        "nan.obj": ("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
        "inf.obj": ("v 1e39 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite|overflow"),
        "flat.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero area"),
        "points.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\n", "no triangle faces"),
        "empty.obj": ("", "empty file"),
        "random.glb": (np.random.default_rng(0).bytes(4096), "not a GLB file"),
        "random.obj": (np.random.default_rng(1).bytes(4096), "OBJ|no triangle faces"),
        "random.bin": (b"\x01\x02" * 1000, "not a format we can read"),
        "broken.gltf": ("{not json", "not valid glTF"),
        "broken.ply": ("ply\nformat ascii 1.0\nelement vertex 3\n", "end_header"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            load_mesh(write_text(tmp_path, name, content))


def test_degenerate_faces_and_unreferenced_vertices_are_removed(tmp_path: Path) -> None:
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 2 0 0\nv 9 9 9\nf 1 2 3\nf 1 2 4\nf 1 1 2\n"
    mesh = load_mesh(write_text(tmp_path, "m.obj", obj))
    assert mesh.faces.shape == (1, 3) and len(mesh.vertices) == 3
    np.testing.assert_allclose(mesh.vertices[mesh.faces[0]], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_out_of_range_indices_are_rejected(tmp_path: Path) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, np.array([0, 1, 2, 0, 2, 9]))
    with pytest.raises(ValueError, match="outside its 4 vertices"):
        load_mesh(write_glb(tmp_path / "bad.glb", document, blob))


def test_face_and_vertex_limits(tmp_path: Path) -> None:
    path = tmp_path / "upload" / "s.obj"
    path.parent.mkdir()
    odd_sphere().export(path)
    with pytest.raises(ValueError, match="320 faces"):
        load_mesh(path, MeshLimits(max_faces=100))
    with pytest.raises(ValueError, match="vertices"):
        load_mesh(path, MeshLimits(max_vertices=100))
    with pytest.raises(ValueError, match="at most 1000 bytes"):
        load_mesh(path, MeshLimits(max_file_bytes=1000))


def test_headers_asking_for_huge_arrays_are_rejected_before_parsing(tmp_path: Path) -> None:
    ply = "ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\nend_header\n"
    with pytest.raises(ValueError, match="4000000000 vertices"):
        load_mesh(write_text(tmp_path, "huge.ply", ply + "\0" * 12))
    stl = b"\0" * 80 + struct.pack("<I", 3) + b"\0" * 150
    with pytest.raises(ValueError, match="3 triangles"):
        load_mesh(write_text(tmp_path, "huge.stl", stl), MeshLimits(max_faces=2))
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    document["accessors"].append({"componentType": 5126, "count": 10**11, "type": "VEC3"})  # no bufferView
    with pytest.raises(ValueError, match="bytes of arrays"):
        load_mesh(write_glb(tmp_path / "huge.glb", document, blob))


def test_compressed_gltf_is_explained(tmp_path: Path) -> None:
    document, blob = gltf_document(QUAD_POSITIONS, QUAD_INDICES)
    document["extensionsRequired"] = document["extensionsUsed"] = ["EXT_meshopt_compression"]
    with pytest.raises(ValueError, match="EXT_meshopt_compression"):
        load_mesh(write_glb(tmp_path / "packed.glb", document, blob))


# --- normalisation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("extent", [0.9, 1.0, 2.5])
def test_normalize_mesh_centres_and_scales(extent: float) -> None:
    source = odd_sphere()
    mesh, matrix = normalize_mesh(Mesh(source.vertices, source.faces), extent)
    low, high = mesh.vertices.min(0), mesh.vertices.max(0)
    np.testing.assert_allclose((low + high) / 2, 0.0, atol=1e-6)
    assert np.abs(mesh.vertices).max() == pytest.approx(extent, rel=1e-6)
    homogeneous = np.c_[source.vertices, np.ones(len(source.vertices))]
    np.testing.assert_allclose((homogeneous @ matrix.T)[:, :3], mesh.vertices, atol=1e-5)
    restored = (np.c_[mesh.vertices, np.ones(len(mesh.vertices))] @ np.linalg.inv(matrix).T)[:, :3]
    np.testing.assert_allclose(restored, source.vertices, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, source.faces)


def test_normalize_mesh_rejects_bad_input() -> None:
    point = Mesh(np.ones((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="coincide"):
        normalize_mesh(point)
    with pytest.raises(ValueError, match="extent"):
        normalize_mesh(Mesh(np.eye(3), np.array([[0, 1, 2]])), extent=0.0)
