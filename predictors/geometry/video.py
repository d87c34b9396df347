"""Web-friendly MP4 encoding (H.264, yuv420p, faststart) and turntable videos of meshes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from predictors.geometry.mesh import Mesh
from predictors.geometry.preview import SHOWCASE_SHADING, showcase_cameras, to_uint8_rgb

if TYPE_CHECKING:
    from predictors.geometry.cameras import Cameras

# libx264 constant rate factor (lower is better quality; 18-23 is visually near-lossless for renders).
MP4_CRF = 20
# Frames rendered per render_color call while streaming a turntable into the encoder.
TURNTABLE_CHUNK = 8


def write_mp4(frames: Iterable[np.ndarray], path: Path, *, fps: int = 24, size: tuple[int, int]) -> Path:
    """Encode uint8 RGB frames [H, W, 3] into an H.264 (yuv420p, +faststart) MP4 and return the path.

    ``size`` is (width, height); both must be positive multiples of 16, so that no encoder rescales, and
    every frame must have that size. Frames are streamed to ffmpeg as they are produced. On error the
    partial file is removed.
    """
    import imageio_ffmpeg

    width, height = size
    if width <= 0 or height <= 0 or width % 16 or height % 16:
        raise ValueError(
            f"write_mp4: width and height must be positive multiples of 16, not {width}x{height}"
        )
    if fps <= 0:
        raise ValueError(f"write_mp4: fps must be positive, got {fps}")
    path = Path(path)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        macro_block_size=16,
        quality=None,
        output_params=["-crf", str(MP4_CRF), "-preset", "medium", "-movflags", "+faststart"],
    )
    writer.send(None)  # start ffmpeg
    count = 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(
                    f"write_mp4: frame {count} must be uint8 of shape {(height, width, 3)}, "
                    f"got {frame.dtype} {frame.shape}"
                )
            writer.send(np.ascontiguousarray(frame))
            count += 1
        if count == 0:
            raise ValueError("write_mp4: no frames given")
    except BaseException:
        writer.close()
        path.unlink(missing_ok=True)
        raise
    writer.close()
    return path


def render_turntable(
    mesh: Mesh,
    path: Path,
    *,
    frames: int = 48,
    size: int = 512,
    elevation: float = 15.0,
    fps: int = 24,
    device: str = "cpu",
) -> Path:
    """Render ``frames`` views orbiting ``mesh`` once (azimuth 0° = front, turning towards +x) into an MP4.

    Perspective cameras (40° field of view) at ``elevation`` degrees, framed so the whole mesh is visible,
    white background, headlight (Lambert) shading over the mesh's colours. ``size`` is
    the square frame side in pixels and must be a multiple of 16.
    """
    if frames < 1:
        raise ValueError(f"render_turntable: frames must be at least 1, got {frames}")
    if size <= 0 or size % 16:
        raise ValueError(f"render_turntable: size must be a positive multiple of 16, got {size}")
    azimuths = [360.0 * index / frames for index in range(frames)]
    cameras = showcase_cameras(mesh, azimuths, elevation)
    return write_mp4(_render_frames(mesh, cameras, size, device), path, fps=fps, size=(size, size))


def _render_frames(mesh: Mesh, cameras: Cameras, size: int, device: str) -> Iterator[np.ndarray]:
    """Render the cameras in chunks and yield uint8 RGB frames one by one."""
    from predictors.geometry.render import render_color

    for start in range(0, len(cameras), TURNTABLE_CHUNK):
        chunk = cameras[start : start + TURNTABLE_CHUNK]
        rgba = render_color(
            mesh, chunk, (size, size), shading=SHOWCASE_SHADING, background=(1, 1, 1), device=device
        )
        yield from to_uint8_rgb(rgba)
