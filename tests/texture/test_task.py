"""Texture task pieces: directional prompts, condition images, settings, mesh preparation."""

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.render import render_passes
from predictors.inputs import parse_inputs
from predictors.placement import Placement
from predictors.texture.conditions import (
    canny_edges,
    condition_images,
    depth_image,
    gaussian_blur,
    normal_image,
)
from predictors.texture.inputs import TextureInputs
from predictors.texture.models import FAMILIES, TextureModels
from predictors.texture.prompts import directional_prompts, view_direction
from predictors.texture.task import OBJECT_RADIUS, prepare_mesh, undo_normalisation


def test_directions_follow_syncmvd_rules():
    azimuths = [-180, -135, -90, -45, 0, 45, 90, 135, 0, 180, 10]
    elevations = [0] * 8 + [30, 30, 60]
    got = [view_direction(a, e) for a, e in zip(azimuths, elevations, strict=True)]
    assert got == ["back", "back", "side", "side", "front", "side", "side", "back", "front", "back", "top"]
    positives, negatives = directional_prompts("a cat", "blurry", [0, 90], [0, 0])
    assert positives == ["a cat, front view.", "a cat, side view."]
    assert negatives == ["blurry, view.", "blurry, front view."]


def test_canny_finds_a_step_edge_and_nothing_on_flat_regions():
    image = np.zeros((32, 32))
    image[:, 16:] = 255.0
    edges = canny_edges(image)
    columns = np.nonzero(edges.any(axis=0))[0]
    assert set(columns) <= {15, 16} and edges[:, 15:17].any(axis=1).all()
    assert not canny_edges(np.full((32, 32), 90.0)).any()
    weak = np.zeros((32, 32))
    weak[:, 16:] = 10.0  # gradient below the low threshold
    assert not canny_edges(weak).any()


@pytest.fixture(scope="module")
def box_views():
    box = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    mesh = Mesh(np.asarray(box.vertices, np.float32), np.asarray(box.faces))
    cameras = orbit_cameras([0.0, 45.0], [0.0, 0.0])
    return render_passes(mesh, cameras, (64, 64)), cameras


def test_blur_matches_scipy_gaussian_filter():
    images = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = ndimage.gaussian_filter(
        images.numpy(), sigma=(0, 0, 2.0, 2.0), radius=(0, 0, 2, 2), mode="mirror"
    )
    np.testing.assert_allclose(gaussian_blur(images).numpy(), expected, atol=1e-12)


def test_depth_is_near_white_and_normals_face_the_camera(box_views):
    passes, cameras = box_views
    depth = depth_image(passes.depth, passes.mask)
    assert depth.shape == (2, 64, 64) and depth.min() >= 0.0 and depth.max() <= 1.0
    assert (depth[0][~passes.mask[0]] == 0).all()
    # Seen from 45°, the cube's nearest vertical edge is in the middle of the image: brightest there.
    row = depth[1, 32][passes.mask[1][32]]
    centre = row.shape[0] // 2
    assert row[centre] > row[0] and row[centre] > row[-1]
    normals = normal_image(passes.normals, passes.mask, cameras.world_to_cam).permute(0, 3, 1, 2)
    # The front camera's frame is the world frame (x right, y up, z towards the camera).
    world = passes.normals[0][passes.mask[0]]
    torch.testing.assert_close(normals[0][:, passes.mask[0]].T, (world + 1) / 2, atol=1e-5, rtol=0)
    # Towards-the-camera channel: the cosine with the direction to the camera, for any view.
    toward = (passes.normals[1] * -cameras.forwards[1]).sum(dim=-1)[passes.mask[1]]
    torch.testing.assert_close(normals[1, 2][passes.mask[1]], (toward + 1) / 2, atol=1e-5, rtol=0)
    background = normals[0][:, ~passes.mask[0]]
    assert torch.allclose(background, torch.tensor([0.5, 0.5, 1.0])[:, None])
    # The condition images are these, blurred as SyncMVD does (canny is not blurred).
    conditions = condition_images("depth", passes, cameras.world_to_cam)
    torch.testing.assert_close(conditions, gaussian_blur(depth[:, None].expand(-1, 3, -1, -1)))
    conditions = condition_images("normal", passes, cameras.world_to_cam)
    torch.testing.assert_close(conditions, gaussian_blur(normals.contiguous()))


def _inputs(**values) -> TextureInputs:
    return parse_inputs(TextureInputs, {"mesh": "m.glb", "prompt": "x", **values}, "texture")


def test_inputs_defaults_and_errors():
    inputs = _inputs(prompt=" a vase ")
    assert inputs.condition == "depth" and inputs.steps == 30 and inputs.base_model == "sd15"
    azimuths, elevations = inputs.views()
    assert azimuths[:8] == (-180.0, -135.0, -90.0, -45.0, 0.0, 45.0, 90.0, 135.0)
    assert len(azimuths) == 10 and elevations[-2:] == (30.0, 30.0)
    ring = _inputs(camera_azimuths="0, 120,240", top_views=False)
    assert ring.views() == ((0.0, 120.0, 240.0), (0.0, 0.0, 0.0))
    for bad, message in [
        ({"prompt": ""}, "prompt"),
        ({"condition": "seg"}, "condition"),
        ({"camera_azimuths": "a,b"}, "camera_azimuths"),
        ({"camera_azimuths": ",".join(["0"] * 15)}, "camera_azimuths"),
    ]:
        with pytest.raises(ValueError, match=message):
            _inputs(**bad)


def test_missing_stacks_are_named(tmp_path):
    device = torch.device("cpu")
    models = TextureModels(
        tmp_path, device, torch.float32, {}, {"sd15": {"depth": None}}, None, Placement(device)
    )
    with pytest.raises(ValueError, match="controlnet-sd15-canny"):
        models.controlnet(FAMILIES["sd15"], "canny")
    with pytest.raises(ValueError, match="no official ControlNet for sdxl"):
        models.controlnet(FAMILIES["sdxl"], "normal")
    with pytest.raises(ValueError, match="controlnet-sdxl-depth"):
        models.controlnet(FAMILIES["sdxl"], "depth")
    with pytest.raises(ValueError, match="sdxl-base"):
        models.base("sdxl")
    with pytest.raises(ValueError, match="neither sd15, sdxl nor a checkpoint"):
        models.base("juggernaut")


def test_prepare_mesh_fits_the_cameras_and_round_trips():
    box = trimesh.creation.box(extents=[4.0, 1.0, 2.0])
    box.apply_translation([5.0, -1.0, 2.0])
    mesh = Mesh(np.asarray(box.vertices, np.float32), np.asarray(box.faces))
    prepared, matrix = prepare_mesh(mesh, keep_uv=False, texture_size=256)
    assert prepared.has_uvs and len(prepared.faces) == len(mesh.faces)
    radius = np.linalg.norm(prepared.vertices, axis=1).max()
    assert radius == pytest.approx(OBJECT_RADIUS, rel=1e-5)
    np.testing.assert_allclose(undo_normalisation(prepared.vertices, matrix), mesh.vertices, atol=1e-5)
    uvs = prepared.copy_with(texture=None)
    kept, _ = prepare_mesh(uvs, keep_uv=True, texture_size=256)
    np.testing.assert_array_equal(kept.uvs, uvs.uvs)
