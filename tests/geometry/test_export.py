"""GLB export (checked with glTF-Validator and a raw GLB reader), MP4 encoding, turntables and previews."""

import io
import itertools
import json
import struct

import imageio_ffmpeg
import numpy as np
import pytest
import trimesh
from PIL import Image

from predictors.geometry.export import export_glb
from predictors.geometry.mesh import Mesh
from predictors.geometry.preview import image_grid, showcase_cameras, write_preview_png
from predictors.geometry.render import render_color
from predictors.geometry.uv import unwrap_uv
from predictors.geometry.video import render_turntable, write_mp4
from tests.support.gltf_validation import validate_glb
from tests.support.mp4_check import probe_mp4, top_level_atoms

# Quadrant colours of the test texture, named by where they sit in the image (row 0 = top).
TOP_LEFT, TOP_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
COMPONENT_DTYPES = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
COMPONENT_COUNTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def quadrant_texture(size: int = 64) -> np.ndarray:
    texture = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    texture[:half, :half], texture[:half, half:] = TOP_LEFT, TOP_RIGHT
    texture[half:, :half], texture[half:, half:] = BOTTOM_LEFT, BOTTOM_RIGHT
    return texture


def sphere(subdivisions: int = 3, radius: float = 0.9) -> Mesh:
    icosphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(vertices=icosphere.vertices, faces=icosphere.faces)


@pytest.fixture(scope="module")
def textured_sphere() -> Mesh:
    return unwrap_uv(sphere()).copy_with(texture=quadrant_texture())


def read_glb(path) -> tuple[dict, bytes]:
    """The JSON chunk and the binary chunk of a GLB file, read per the glTF 2.0 spec (no trimesh)."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    document = json.loads(data[20 : 20 + json_length])
    binary_offset = 20 + json_length
    binary_length, binary_type = struct.unpack_from("<I4s", data, binary_offset)
    assert binary_type == b"BIN\x00"
    return document, data[binary_offset + 8 : binary_offset + 8 + binary_length]


def read_accessor(document: dict, binary: bytes, index: int) -> np.ndarray:
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = np.dtype(COMPONENT_DTYPES[accessor["componentType"]])
    width = COMPONENT_COUNTS[accessor["type"]]
    assert view.get("byteStride", dtype.itemsize * width) == dtype.itemsize * width
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    values = np.frombuffer(binary, dtype, accessor["count"] * width, start)
    return values.reshape(accessor["count"], width) if width > 1 else values


def read_image(document: dict, binary: bytes, texture_index: int) -> np.ndarray:
    image = document["images"][document["textures"][texture_index]["source"]]
    view = document["bufferViews"][image["bufferView"]]
    start = view.get("byteOffset", 0)
    return np.asarray(Image.open(io.BytesIO(binary[start : start + view["byteLength"]])).convert("RGB"))


def only_primitive(document: dict) -> dict:
    assert len(document["meshes"]) == 1 and len(document["meshes"][0]["primitives"]) == 1
    return document["meshes"][0]["primitives"][0]


def test_textured_glb_passes_validator_and_round_trips(tmp_path, textured_sphere):
    path = export_glb(textured_sphere, tmp_path / "model.glb")
    report = validate_glb(path)
    assert report["numErrors"] == 0, report["messages"]
    assert report["numWarnings"] == 0, report["messages"]

    loaded = trimesh.load(path, process=False, force="mesh")
    # One vertex per UV vertex (each UV vertex belongs to exactly one position).
    assert len(loaded.vertices) == len(np.unique(textured_sphere.uv_faces))
    np.testing.assert_allclose(
        loaded.bounds, [textured_sphere.vertices.min(0), textured_sphere.vertices.max(0)]
    )
    assert loaded.visual.material.metallicFactor == 0.0

    document, binary = read_glb(path)
    primitive = only_primitive(document)
    pbr = document["materials"][primitive["material"]]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0 and pbr["roughnessFactor"] == 1
    positions = read_accessor(document, binary, primitive["attributes"]["POSITION"])
    normals = read_accessor(document, binary, primitive["attributes"]["NORMAL"])
    # Smooth normals of a sphere point away from its centre, also across UV seams.
    expected = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    assert np.min(np.sum(normals * expected, axis=1)) > 0.99


def test_validator_harness_reports_errors(tmp_path):
    path = export_glb(sphere(1), tmp_path / "model.glb")
    document, binary = read_glb(path)
    indices = document["accessors"][only_primitive(document)["indices"]]
    view = document["bufferViews"][indices["bufferView"]]
    start = len(path.read_bytes()) - len(binary) + view.get("byteOffset", 0) + indices.get("byteOffset", 0)
    corrupted = bytearray(path.read_bytes())
    corrupted[start : start + 4] = (10**6).to_bytes(4, "little")  # an index far past the vertex count
    path.write_bytes(bytes(corrupted))
    report = validate_glb(path)
    assert report["numErrors"] > 0
    assert any(message["code"] == "ACCESSOR_INDEX_OOB" for message in report["messages"])


def test_texture_orientation_survives_export(tmp_path, textured_sphere):
    """Sample the embedded image at each vertex's glTF UV (origin top-left) and compare with the Mesh UVs."""
    document, binary = read_glb(export_glb(textured_sphere, tmp_path / "model.glb"))
    primitive = only_primitive(document)
    material = document["materials"][primitive["material"]]
    image = read_image(document, binary, material["pbrMetallicRoughness"]["baseColorTexture"]["index"])
    np.testing.assert_array_equal(image, textured_sphere.texture)
    gltf_uv = read_accessor(document, binary, primitive["attributes"]["TEXCOORD_0"]).astype(np.float64)
    height, width = image.shape[:2]
    rows = np.clip((gltf_uv[:, 1] * height).astype(int), 0, height - 1)
    columns = np.clip((gltf_uv[:, 0] * width).astype(int), 0, width - 1)
    sampled = image[rows, columns]
    # Expected from the Mesh convention alone: v = 1 is the top of the image, u = 0 the left.
    mesh_uv = gltf_uv * [1, -1] + [0, 1]
    away_from_middle = np.all(np.abs(mesh_uv - 0.5) > 0.02, axis=1)
    top, left = mesh_uv[:, 1] > 0.5, mesh_uv[:, 0] < 0.5
    expected = np.where(
        top[:, None],
        np.where(left[:, None], TOP_LEFT, TOP_RIGHT),
        np.where(left[:, None], BOTTOM_LEFT, BOTTOM_RIGHT),
    )
    assert away_from_middle.sum() > 100
    np.testing.assert_array_equal(sampled[away_from_middle], expected[away_from_middle])


def test_vertex_colours_are_written_as_linear_color_0(tmp_path):
    mesh = sphere(2)
    srgb = np.array([0, 128, 255], np.uint8)[np.arange(len(mesh.vertices)) % 3]
    colours = np.stack([srgb, np.roll(srgb, 1), np.roll(srgb, 2)], axis=1)
    path = export_glb(mesh.copy_with(vertex_colors=colours), tmp_path / "coloured.glb")
    assert validate_glb(path)["numErrors"] == 0
    document, binary = read_glb(path)
    primitive = only_primitive(document)
    assert document["materials"][primitive["material"]]["pbrMetallicRoughness"]["metallicFactor"] == 0
    written = read_accessor(document, binary, primitive["attributes"]["COLOR_0"])
    positions = read_accessor(document, binary, primitive["attributes"]["POSITION"])
    # sRGB 128 is linear 0.2159 (IEC 61966-2-1), i.e. 55 of 255; 0 and 255 are unchanged.
    linear_of = {0: 0, 128: 55, 255: 255}
    expected = np.vectorize(linear_of.get)(colours)
    order = [np.flatnonzero(np.all(mesh.vertices == p, axis=1))[0] for p in positions]
    np.testing.assert_array_equal(written[:, :3], expected[order])
    assert np.all(written[:, 3] == 255)


def test_plain_mesh_gets_grey_material_and_outward_winding(tmp_path):
    inward = sphere(2)
    inward = inward.copy_with(faces=inward.faces[:, ::-1])
    path = export_glb(inward, tmp_path / "plain.glb")
    assert validate_glb(path)["numErrors"] == 0
    document, binary = read_glb(path)
    primitive = only_primitive(document)
    pbr = document["materials"][primitive["material"]]["pbrMetallicRoughness"]
    assert "baseColorTexture" not in pbr and pbr["metallicFactor"] == 0
    assert pbr["baseColorFactor"][0] == pbr["baseColorFactor"][1] == pbr["baseColorFactor"][2] < 1
    positions = read_accessor(document, binary, primitive["attributes"]["POSITION"]).astype(np.float64)
    triangles = positions[read_accessor(document, binary, primitive["indices"]).reshape(-1, 3)]
    volume = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])).sum() / 6
    assert volume == pytest.approx(4 / 3 * np.pi * 0.9**3, rel=0.05)


def test_open_mesh_keeps_its_winding(tmp_path):
    triangle = Mesh(vertices=np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0]]), faces=np.array([[0, 1, 2]]))
    document, binary = read_glb(export_glb(triangle, tmp_path / "triangle.glb"))
    np.testing.assert_array_equal(
        read_accessor(document, binary, only_primitive(document)["indices"]), [0, 1, 2]
    )


def test_textured_mesh_without_uvs_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="uvs"):
        export_glb(sphere(1).copy_with(texture=quadrant_texture()), tmp_path / "bad.glb")


def test_mp4_has_all_frames_h264_yuv420p_and_faststart(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)]
    frames = [np.full((48, 80, 3), colour, np.uint8) for colour in colours]
    path = write_mp4(iter(frames), tmp_path / "clip.mp4", fps=24, size=(80, 48))
    assert probe_mp4(path) == (len(frames), 80, 48, "h264", "yuv420p")
    atoms = top_level_atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    decoded = [np.frombuffer(frame, np.uint8).reshape(48, 80, 3) for frame in reader]
    for frame, colour in zip(decoded, colours, strict=True):
        np.testing.assert_allclose(frame.reshape(-1, 3).mean(0), colour, atol=8)


def test_atom_reader_sees_moov_after_mdat_without_faststart(tmp_path):
    path = tmp_path / "plain.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (32, 32), codec="libx264", macro_block_size=16)
    writer.send(None)
    writer.send(np.zeros((32, 32, 3), np.uint8))
    writer.close()
    atoms = top_level_atoms(path)
    assert atoms.index("moov") > atoms.index("mdat")


@pytest.mark.parametrize("size", [(100, 64), (64, 50), (0, 64)])
def test_mp4_rejects_sizes_that_are_not_multiples_of_16(tmp_path, size):
    with pytest.raises(ValueError, match="multiples of 16"):
        write_mp4([np.zeros((size[1], size[0], 3), np.uint8)], tmp_path / "odd.mp4", size=size)


def test_mp4_rejects_mismatched_frames_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.mp4"
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((32, 48, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        write_mp4(frames, path, size=(32, 32))
    assert not path.exists()
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], path, size=(32, 32))
    assert not path.exists()


def test_turntable_renders_every_frame_of_the_turning_object(tmp_path, textured_sphere):
    path = render_turntable(textured_sphere, tmp_path / "turntable.mp4", frames=6, size=64, fps=12)
    assert probe_mp4(path) == (6, 64, 64, "h264", "yuv420p")
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    frames = [np.frombuffer(raw, np.uint8).reshape(64, 64, 3).astype(int) for raw in reader]
    for frame in frames:
        assert frame[24:40, 24:40].min(axis=2).mean() < 60  # every texture colour has a zero channel
    assert all(np.abs(a - b).mean() > 5 for a, b in itertools.pairwise(frames))


@pytest.mark.parametrize("elevation", [-30.0, 15.0, 60.0])
def test_showcase_cameras_frame_the_whole_object_tightly(elevation):
    box = trimesh.creation.box(extents=(1.6, 0.6, 1.0))
    mesh = Mesh(vertices=box.vertices + np.array([0.1, 0.0, 0.0]), faces=box.faces)
    cameras = showcase_cameras(mesh, [0.0, 45.0, 90.0, 200.0], elevation)
    covered = render_color(mesh, cameras, (128, 128), shading="lambert")[..., 3].numpy() > 0
    for view in covered:
        assert not (view[0].any() or view[-1].any() or view[:, 0].any() or view[:, -1].any())
        rows, columns = np.flatnonzero(view.any(axis=1)), np.flatnonzero(view.any(axis=0))
        assert max(np.ptp(rows), np.ptp(columns)) > 0.5 * 128


def test_turntable_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="multiple of 16"):
        render_turntable(sphere(1), tmp_path / "t.mp4", frames=2, size=60)


def test_preview_png_has_four_framed_views(tmp_path):
    path = write_preview_png(sphere(2), tmp_path / "preview.png", size=96)
    image = np.asarray(Image.open(path))
    assert image.shape == (96, 96, 3)
    for row in range(2):
        for column in range(2):
            tile = image[row * 48 : (row + 1) * 48, column * 48 : (column + 1) * 48].astype(int)
            border = np.concatenate([tile[0], tile[-1], tile[:, 0], tile[:, -1]])
            assert border.min() > 240
            assert tile[20:28, 20:28].max() < 240  # Lambert-shaded grey sphere in the middle
    with pytest.raises(ValueError, match="even"):
        write_preview_png(sphere(1), tmp_path / "odd.png", size=95)


def test_image_grid_tiles_row_major_and_pads_with_white():
    images = [np.full((2, 3, 3), value, np.uint8) for value in (10, 20, 30)]
    grid = image_grid(images, columns=2)
    white = np.full((2, 3, 3), 255, np.uint8)
    expected = np.concatenate(
        [np.concatenate([images[0], images[1]], axis=1), np.concatenate([images[2], white], axis=1)], axis=0
    )
    np.testing.assert_array_equal(grid, expected)
    assert image_grid(images, columns=5).shape == (2, 9, 3)
    with pytest.raises(ValueError, match="shape"):
        image_grid([images[0], np.zeros((3, 3, 3), np.uint8)], columns=2)
