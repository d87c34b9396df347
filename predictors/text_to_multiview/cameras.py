"""MVDream's camera convention and the matching perspective cameras for reconstruction.

MVDream conditions each view on a 16-vector: the 4x4 camera-to-world matrix of a camera on the unit sphere
looking at the origin, built in an OpenGL-style y-up world, then expressed in Blender's z-up world (rows
permuted by ``BLENDER_FROM_OPENGL``) and flattened row-major (``mvdream/camera_utils.py``, ``get_camera``):

* camera position ``(cos(el) sin(az), sin(el), cos(el) cos(az))``: azimuth 0 is on +z, azimuth 90 on +x;
* columns of the rotation: right = forward x (0, 1, 0), up = right x forward, and -forward (OpenGL axes);
* views at ``azimuth_start + i * span / F`` for i = 0..F-1 (span 360 by default).

Which view is the front: MVDream draws the object with its front facing its azimuth 90° (+x). The official
script starts at azimuth 90, so with the default ``azimuth_start`` = 90 the views are front, right, back and
left, in that order (dreamgaussian and LGM also take MVDream's azimuth-90 view as the front).

Our world (``predictors.geometry.cameras``) is y-up with the front on +z and azimuth measured from +z towards
+x, so MVDream's y-up world is ours turned by -90° about y: an MVDream view at azimuth ``a`` is our orbit
camera at azimuth ``a - FRONT_AZIMUTH`` and the same elevation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from predictors.geometry.cameras import Cameras, orbit_cameras

NUM_VIEWS = 4
DEFAULT_ELEVATION = 15.0
DEFAULT_AZIMUTH_START = 90.0
FRONT_AZIMUTH = 90.0  # MVDream azimuth that sees the object's front

# Blender (z-up) coordinates from OpenGL (y-up) ones: (x, y, z) -> (x, -z, y); MVDream left-multiplies by it.
BLENDER_FROM_OPENGL = torch.tensor(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    dtype=torch.float64,
)

# Intrinsics assumed for the generated views when reconstructing (MVDream has no intrinsics input; training
# used fov 15-60°). LGM reconstructs MVDream views with fovy 49.1° from radius 1.5; we keep that fov and scale
# the scene so that the image spans [-1, 1] at the origin, i.e. the object fits the cube [-1, 1]^3.
RECONSTRUCTION_FOVY_DEG = 49.1
RECONSTRUCTION_DISTANCE = 1.0 / math.tan(math.radians(RECONSTRUCTION_FOVY_DEG) / 2.0)


def view_azimuths(
    num_views: int = NUM_VIEWS, azimuth_start: float = DEFAULT_AZIMUTH_START, azimuth_span: float = 360.0
) -> list[float]:
    """MVDream azimuths in degrees of ``num_views`` views spread evenly over ``azimuth_span``."""
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}")
    return [azimuth_start + azimuth_span * index / num_views for index in range(num_views)]


def camera_to_world(azimuth_deg: float, elevation_deg: float) -> torch.Tensor:
    """MVDream's camera-to-world matrix [4, 4] (float64) in Blender coordinates, camera at unit distance."""
    azimuth, elevation = math.radians(azimuth_deg), math.radians(elevation_deg)
    position = torch.tensor(
        [
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
            math.cos(elevation) * math.cos(azimuth),
        ],
        dtype=torch.float64,
    )
    forward = -position
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    if right.norm() < 1e-9:
        raise ValueError(
            f"elevation {elevation_deg}° looks straight along the up axis; use |elevation| < 90°"
        )
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, up / up.norm(), -forward, position
    return BLENDER_FROM_OPENGL @ matrix


def camera_vectors(azimuths_deg: Sequence[float], elevation_deg: float) -> torch.Tensor:
    """The UNet's camera input [F, 16] float32: each view's matrix flattened row-major."""
    return torch.stack([camera_to_world(a, elevation_deg).reshape(16) for a in azimuths_deg]).float()


def reconstruction_cameras(azimuths_deg: Sequence[float], elevation_deg: float) -> Cameras:
    """Perspective cameras of the generated views in our world (front on +z), for posed-view reconstruction."""
    distance = RECONSTRUCTION_DISTANCE
    return orbit_cameras(
        [a - FRONT_AZIMUTH for a in azimuths_deg],
        [elevation_deg] * len(azimuths_deg),
        distance=distance,
        orthographic=False,
        fovy_deg=RECONSTRUCTION_FOVY_DEG,
        near=0.1 * distance,
        far=3.0 * distance,
    )
