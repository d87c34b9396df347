"""MVDream's camera convention: golden vectors from the reference code, and the reconstruction cameras."""

import math

import pytest
import torch

from predictors.text_to_multiview.cameras import (
    BLENDER_FROM_OPENGL,
    RECONSTRUCTION_DISTANCE,
    camera_to_world,
    camera_vectors,
    reconstruction_cameras,
    view_azimuths,
)

S, C = math.sin(math.radians(15)), math.cos(math.radians(15))  # 0.258819, 0.965926

# bytedance/MVDream camera_utils.get_camera(4, elevation=15, azimuth_start=90) (t2i.py's default), printed by
# running the reference code: one row-major camera-to-world matrix (Blender z-up) per view.
REFERENCE_DEFAULT_VIEWS = [
    [0.0, -S, C, C, 1.0, 0.0, 0.0, 0.0, 0.0, C, S, S, 0.0, 0.0, 0.0, 1.0],
    [-1.0, 0.0, 0.0, 0.0, 0.0, -S, C, C, 0.0, C, S, S, 0.0, 0.0, 0.0, 1.0],
    [0.0, S, -C, -C, -1.0, 0.0, 0.0, 0.0, 0.0, C, S, S, 0.0, 0.0, 0.0, 1.0],
    [1.0, 0.0, 0.0, 0.0, 0.0, S, -C, -C, 0.0, C, S, S, 0.0, 0.0, 0.0, 1.0],
]


def test_golden_vectors_of_single_views():
    # Values from shared/reference/mvdream.md section 1.4 (computed with the repository's own function).
    assert torch.allclose(
        camera_vectors([0.0], 15.0)[0],
        torch.tensor([1, 0, 0, 0, 0, S, -C, -C, 0, C, S, S, 0, 0, 0, 1.0]),
        atol=1e-6,
    )
    assert torch.allclose(
        camera_vectors([90.0], 15.0)[0],
        torch.tensor([0, -S, C, C, 1, 0, 0, 0, 0, C, S, S, 0, 0, 0, 1.0]),
        atol=1e-6,
    )
    rows = camera_vectors([0.0], 0.0)[0].reshape(4, 4)[:3]
    assert torch.allclose(rows, torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, -1], [0, 1, 0, 0]]), atol=1e-7)


def test_default_views_match_the_reference_sampler():
    azimuths = view_azimuths(4, 90.0)
    assert azimuths == [90.0, 180.0, 270.0, 360.0]
    vectors = camera_vectors(azimuths, 15.0)
    assert vectors.dtype == torch.float32 and vectors.shape == (4, 16)
    assert torch.allclose(vectors, torch.tensor(REFERENCE_DEFAULT_VIEWS), atol=1e-6)


def test_matrices_are_rigid_with_unit_translation():
    for azimuth in (0.0, 37.0, 200.0):
        for elevation in (-30.0, 0.0, 15.0, 60.0):
            matrix = camera_to_world(azimuth, elevation)
            rotation = matrix[:3, :3]
            assert torch.allclose(rotation.T @ rotation, torch.eye(3, dtype=torch.float64), atol=1e-12)
            assert torch.det(rotation) == pytest.approx(1.0)
            assert matrix[:3, 3].norm() == pytest.approx(1.0)
            # The camera looks at the origin: its -z axis (third column negated) points from it to the origin.
            assert torch.allclose(-matrix[:3, 2], -matrix[:3, 3], atol=1e-12)
    with pytest.raises(ValueError, match="elevation"):
        camera_to_world(0.0, 90.0)


def test_reconstruction_cameras_are_mvdream_cameras_turned_to_our_front():
    """Our world = MVDream's OpenGL world turned by -90° about y (MVDream's azimuth-90 view is the front)."""
    azimuths = view_azimuths(4, 90.0)
    cameras = reconstruction_cameras(azimuths, 15.0)
    turn = torch.eye(4, dtype=torch.float64)  # rotation by -90° about y: +x -> +z, +z -> -x
    turn[:3, :3] = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    for index, azimuth in enumerate(azimuths):
        opengl = BLENDER_FROM_OPENGL.T @ camera_to_world(azimuth, 15.0)
        expected = turn @ opengl
        ours = torch.linalg.inv(cameras.world_to_cam[index].double())
        assert torch.allclose(ours[:3, :3], expected[:3, :3], atol=1e-6)
        assert torch.allclose(ours[:3, 3], RECONSTRUCTION_DISTANCE * expected[:3, 3], atol=1e-5)
    # Default views: front (+z), right (+x), back (-z), left (-x), all 15° up.
    directions = cameras.centres / cameras.centres.norm(dim=1, keepdim=True)
    horizontal = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 0, -1], [-1, 0, 0]])
    expected = horizontal * C + torch.tensor([0.0, S, 0.0])
    assert torch.allclose(directions, expected, atol=1e-6)
    assert not cameras.orthographic


def test_reconstruction_framing_spans_the_unit_cube():
    cameras = reconstruction_cameras([90.0], 0.0)
    # A point at the origin's image edge distance 1 lands on the image border.
    ndc = cameras.to_ndc(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))[0]
    assert ndc[0, 0].abs().item() == pytest.approx(1.0, abs=1e-5)
    assert ndc[1, 1].abs().item() == pytest.approx(1.0, abs=1e-5)
