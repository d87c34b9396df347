"""UV unwrapping with xatlas (in a child process, with a time limit) and mesh decimation.

xatlas can run for a very long time on large or non-manifold meshes, so ``unwrap_uv`` decimates meshes
above ``max_faces`` first and runs xatlas in a separate Python process that is killed after ``timeout_s``.
When xatlas fails or times out, a simple per-triangle atlas is used instead, so unwrapping always returns
valid UVs.
"""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from predictors.geometry.mesh import Mesh
from predictors.geometry.projection_atlas import AtlasError, projection_atlas
from predictors.runtime import log

logger = logging.getLogger(__name__)

# xatlas packing: the atlas is laid out for about this many texels per side, with this many texels of
# padding between charts (room for the baker to dilate colours into, so bilinear filtering does not bleed).
ATLAS_RESOLUTION = 1024
ATLAS_PADDING_TEXELS = 4

# Fallback atlas: each grid cell holds two triangles; this fraction of a cell is kept free on each side.
FALLBACK_CELL_MARGIN = 0.08

_REPO_ROOT = Path(__file__).resolve().parents[2]
_WORKER_COMMAND = "from predictors.geometry.uv import _xatlas_worker_main; _xatlas_worker_main()"


def unwrap_uv(mesh: Mesh, *, max_faces: int = 40_000, timeout_s: float = 60.0) -> Mesh:
    """A copy of ``mesh`` with a UV atlas (``uvs`` + ``uv_faces``) and no texture.

    ``faces`` keep their order and corner order on the original vertex buffer; ``uv_faces`` index the new
    UV vertices (split along seams). A mesh with more than ``max_faces`` faces is first decimated with
    :func:`decimate`, and the returned mesh is then the decimated one. xatlas runs in a child process; if
    it fails or takes longer than ``timeout_s`` seconds, a per-triangle grid atlas is returned instead
    (logged as a warning). Existing UVs and texture are discarded; vertex colours are kept.
    """
    _check_mesh(mesh)
    if max_faces < 1:
        raise ValueError(f"unwrap_uv: max_faces must be at least 1, got {max_faces}")
    if timeout_s <= 0:
        raise ValueError(f"unwrap_uv: timeout_s must be positive, got {timeout_s}")
    if len(mesh.faces) > max_faces:
        logger.info("unwrap_uv: decimating %d faces to %d before unwrapping", len(mesh.faces), max_faces)
        mesh = decimate(mesh, max_faces)
    try:
        uvs, uv_faces = _run_xatlas_in_child(mesh.vertices, mesh.faces, timeout_s)
    except (subprocess.TimeoutExpired, RuntimeError) as error:
        logger.warning("unwrap_uv: xatlas failed (%s); using a per-triangle fallback atlas", error)
        uvs, uv_faces = fallback_atlas(len(mesh.faces))
    return mesh.copy_with(uvs=uvs, uv_faces=uv_faces, texture=None)


def atlas_with_fallback(mesh: Mesh, *, texture_size: int, max_faces: int = 40_000) -> Mesh:
    """The fast projection atlas (gutters sized for ``texture_size``), or :func:`unwrap_uv` (xatlas) when it
    cannot make a valid one (logged)."""
    try:
        return projection_atlas(mesh, texture_size=texture_size)
    except AtlasError as error:
        log(f"unwrap: projection atlas failed ({error}); falling back to xatlas")
        return unwrap_uv(mesh, max_faces=max_faces)


def decimate(mesh: Mesh, target_faces: int) -> Mesh:
    """Quadric decimation (fast-simplification) to at most about ``target_faces`` faces.

    Returns the mesh unchanged (same object) when it already has ``target_faces`` faces or fewer. UVs and
    texture are dropped (they no longer fit the new vertices); vertex colours are kept by taking, for each
    new vertex, the colour of the nearest original vertex.
    """
    import fast_simplification

    _check_mesh(mesh)
    if target_faces < 1:
        raise ValueError(f"decimate: target_faces must be at least 1, got {target_faces}")
    if len(mesh.faces) <= target_faces:
        return mesh
    vertices, faces = fast_simplification.simplify(
        mesh.vertices.astype(np.float64), mesh.faces.astype(np.int32), target_count=target_faces
    )
    colors = None
    if mesh.vertex_colors is not None:
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(mesh.vertices).query(vertices)
        colors = mesh.vertex_colors[nearest]
    return Mesh(vertices=vertices, faces=faces, vertex_colors=colors)


def fallback_atlas(face_count: int) -> tuple[np.ndarray, np.ndarray]:
    """A valid, non-overlapping atlas with every triangle in its own slot: (uvs [3F, 2], uv_faces [F, 3]).

    Triangles are paired into the cells of a square grid: an even face takes the lower-left half of its cell
    and an odd face the upper-right half, both shrunk so that a margin separates them from each other and
    from the neighbouring cells. Both keep counter-clockwise winding in UV space. Shapes are not preserved.
    """
    if face_count < 1:
        raise ValueError(f"fallback_atlas: face_count must be at least 1, got {face_count}")
    columns = math.ceil(math.sqrt(math.ceil(face_count / 2)))
    near = FALLBACK_CELL_MARGIN
    # Distance from the hypotenuse to the cell diagonal equals the margin when far = near * (1 + sqrt(2)).
    far = near * (1.0 + math.sqrt(2.0))
    lower_left = np.array([[near, near], [1.0 - far, near], [near, 1.0 - far]])
    upper_right = 1.0 - lower_left
    face = np.arange(face_count)
    cell = face // 2
    origin = np.stack([cell % columns, cell // columns], axis=1).astype(np.float64)
    local = np.where((face % 2 == 0)[:, None, None], lower_left[None], upper_right[None])
    uvs = ((origin[:, None, :] + local) / columns).reshape(-1, 2).astype(np.float32)
    uv_faces = np.arange(3 * face_count, dtype=np.int64).reshape(face_count, 3)
    return uvs, uv_faces


def _check_mesh(mesh: Mesh) -> None:
    if mesh.faces.ndim != 2 or mesh.faces.shape[1] != 3 or len(mesh.faces) == 0:
        raise ValueError(f"expected a triangle mesh with at least one face, got faces {mesh.faces.shape}")


def _run_xatlas_in_child(
    vertices: np.ndarray, faces: np.ndarray, timeout_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Run xatlas in a fresh Python process; raises TimeoutExpired or RuntimeError on failure."""
    request = io.BytesIO()
    np.savez(request, vertices=vertices.astype(np.float32), faces=faces.astype(np.uint32))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    # subprocess.run kills the child when the time limit is reached.
    completed = subprocess.run(
        [sys.executable, "-c", _WORKER_COMMAND],
        input=request.getvalue(),
        capture_output=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        lines = completed.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else "no message"
        raise RuntimeError(f"xatlas worker exited with status {completed.returncode}: {reason}")
    try:
        with np.load(io.BytesIO(completed.stdout)) as reply:
            uvs, uv_faces = reply["uvs"], reply["uv_faces"].astype(np.int64)
    except (OSError, ValueError, KeyError) as error:
        raise RuntimeError(f"unreadable reply from the xatlas worker: {error}") from error
    if uv_faces.shape != faces.shape or not np.all(np.isfinite(uvs)):
        raise RuntimeError("xatlas returned an atlas that does not match the mesh")
    return np.clip(uvs, 0.0, 1.0), uv_faces


def _xatlas_atlas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xatlas chart generation and packing into a single atlas: (uvs [T, 2] in [0, 1], uv_faces [F, 3])."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices, faces)
    # Default chart options (one chart-growing iteration): Paint3D's max_iterations=4 doubles the time
    # (measured 5.6 s -> 12.4 s at 40k faces) for slightly fewer seams.
    chart_options = xatlas.ChartOptions()
    pack_options = xatlas.PackOptions()
    pack_options.resolution = ATLAS_RESOLUTION
    pack_options.padding = ATLAS_PADDING_TEXELS
    pack_options.bilinear = True
    atlas.generate(chart_options=chart_options, pack_options=pack_options, verbose=False)
    if atlas.atlas_count != 1:
        raise RuntimeError(f"xatlas packed the charts into {atlas.atlas_count} atlases instead of one")
    _, uv_faces, uvs = atlas[0]
    return uvs.astype(np.float32), uv_faces.astype(np.int64)


def _xatlas_worker_main() -> None:
    """Child-process entry point: reads an npz (vertices, faces) on stdin, writes an npz (uvs, uv_faces)."""
    with np.load(io.BytesIO(sys.stdin.buffer.read())) as request:
        vertices, faces = request["vertices"], request["faces"]
    uvs, uv_faces = _xatlas_atlas(vertices, faces)
    reply = io.BytesIO()
    np.savez(reply, uvs=uvs, uv_faces=uv_faces)
    sys.stdout.buffer.write(reply.getvalue())
    sys.stdout.buffer.flush()
