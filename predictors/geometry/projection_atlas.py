"""A fast UV atlas made of orthographic projections, for closed reconstructed meshes (visual hulls).

Every face gets the projection direction (by default one of the six axis directions) closest to its
normal averaged over a small neighbourhood, and connected regions of faces with the same direction become
charts. Each chart is the orthographic projection of its faces onto the plane of its direction, seen from
outside, so every UV triangle is counter-clockwise; all charts share one world-to-UV scale (uniform texel
density) and are shelf-packed into the unit square with a gutter of ``padding_texels`` around each.

A projection is locally one-to-one but can still fold over (a pleat left by decimation, or a helical ramp
seen from above), so every chart is tested exactly for overlapping triangles. The faces causing a local
pleat get charts of their own; a chart that folds over at large is cut in half along its longer side;
both repeat until no chart overlaps itself. Faces too thin to keep a positive UV area in float32 get a
small triangle of their own. :class:`AtlasError` is raised when no valid atlas results, so that the
caller can fall back to xatlas.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.sparse import csgraph

from predictors.geometry.mesh import Mesh

AXIS_DIRECTIONS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
# A face is only projected along a direction d with n . d at least this (at most 3.3x stretch).
MIN_FACING = 0.3
DIFFUSION_STEPS = 8  # neighbourhood size (in edge hops) of the averaged normal that picks a face's direction
MIN_CHART_FACES = 16  # charts smaller than this join a neighbouring chart where the faces allow
MERGE_PASSES = 3  # rounds of that merging
MAX_ROUNDS = 16  # rounds of cutting folded charts before giving up
MIN_UV_HEIGHT = 2e-6  # smallest UV triangle height (UV units) trusted to keep its orientation in float32
THIN_MARGIN = 4.0  # faces this close to MIN_UV_HEIGHT at the largest possible scale become slivers at once
PACKING_STEPS = 24  # bisection steps of the packing scale
MIN_EJECTED, MAX_EJECTED_FRACTION = 8, 0.01  # beyond this many folded faces a chart is cut in half
_CELL_ENTRIES_PER_TRIANGLE = 16  # the overlap grid grows its cells until triangles cover this many on average


class AtlasError(RuntimeError):
    """The projection atlas could not be made valid for this mesh (use another unwrapper)."""


def projection_atlas(
    mesh: Mesh, *, directions: np.ndarray | None = None, texture_size: int = 1024, padding_texels: int = 4
) -> Mesh:
    """A copy of ``mesh`` with a projection UV atlas (``uvs`` + ``uv_faces``) and no texture.

    Args:
        mesh: triangle mesh, counter-clockwise seen from outside (closed meshes work best).
        directions: [K, 3] projection directions, pointing from the surface towards the viewer (e.g. the
            negated forward vectors of cameras); they are normalised. Default: the six axis directions.
        texture_size: side in texels of the texture the atlas is laid out for.
        padding_texels: gutter, in texels at ``texture_size``, between charts and at the border.

    ``faces`` keep their order and corners; ``uv_faces`` index new UV vertices, split at chart borders.

    Raises:
        ValueError: for an empty mesh or invalid arguments.
        AtlasError: when some face faces none of the directions (n . d < ``MIN_FACING`` for all) or the
            charts cannot be made valid or do not fit the texture with the requested padding.
    """
    units = _check_arguments(mesh, directions, texture_size, padding_texels)
    vertices = mesh.vertices.astype(np.float64)
    faces = mesh.faces
    corners = vertices[faces]
    area_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    extent = float(np.ptp(vertices, axis=0).max())
    degenerate = np.linalg.norm(area_normals, axis=1) <= 1e-12 * max(extent, 1e-30) ** 2
    first, second = _edge_adjacent_faces(faces, len(vertices))
    labels, facing = _face_labels(area_normals, units, first, second)
    cosine = facing[np.arange(len(faces)), labels]
    uncovered = ~degenerate & (cosine < MIN_FACING)
    if uncovered.any():
        raise AtlasError(
            f"{int(uncovered.sum())} faces face none of the {len(units)} projection directions "
            f"(cosine < {MIN_FACING}); add directions that cover every side of the mesh"
        )

    bases = _projection_bases(units)
    projected = corners @ bases[labels].transpose(0, 2, 1)  # chart-local corners [F, 3, 2]
    gap = padding_texels / texture_size
    sliver = degenerate | _thin_at_largest_scale(projected, gap)
    parts = _fold_free_parts(labels, sliver, first, second, projected, cosine)
    sliver_size = float(np.median(np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1))) or 1.0
    for _ in range(2):
        charts = _chart_ids(labels, parts, sliver, first, second)
        layout = _ChartLayout(vertices, faces, charts, labels, sliver, bases, sliver_size)
        uvs = layout.packed_uvs(gap).astype(np.float32)
        thin = _uv_heights(uvs[layout.uv_faces].astype(np.float64)) < MIN_UV_HEIGHT
        if not thin.any():
            return mesh.copy_with(uvs=uvs, uv_faces=layout.uv_faces, texture=None)
        sliver |= thin
    raise AtlasError("projection_atlas: some UV triangles stay too thin to keep their orientation")


def _check_arguments(
    mesh: Mesh, directions: np.ndarray | None, texture_size: int, padding_texels: int
) -> np.ndarray:
    """Validate the arguments; returns the unit projection directions [K, 3] (float64)."""
    if mesh.faces.ndim != 2 or mesh.faces.shape[1] != 3 or len(mesh.faces) == 0:
        raise ValueError(f"projection_atlas: need a triangle mesh with faces [F, 3], got {mesh.faces.shape}")
    if not np.all(np.isfinite(mesh.vertices)):
        raise ValueError("projection_atlas: mesh vertices must be finite")
    if int(texture_size) != texture_size or texture_size < 1:
        raise ValueError(f"projection_atlas: texture_size must be a positive integer, got {texture_size}")
    if int(padding_texels) != padding_texels or padding_texels < 0:
        raise ValueError(f"projection_atlas: padding_texels must be an integer >= 0, got {padding_texels}")
    if directions is None:
        return AXIS_DIRECTIONS
    units = np.asarray(directions, dtype=np.float64)
    if units.ndim != 2 or units.shape[1] != 3 or len(units) == 0:
        raise ValueError(f"projection_atlas: directions must be a [K, 3] array, got shape {units.shape}")
    lengths = np.linalg.norm(units, axis=1)
    if not np.all(np.isfinite(lengths)) or np.any(lengths < 1e-9):
        raise ValueError("projection_atlas: directions must be finite, non-zero vectors")
    return units / lengths[:, None]


def _edge_adjacent_faces(faces: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge, as two index arrays (faces around a non-manifold edge are chained)."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    keys = edges[:, 0] * vertex_count + edges[:, 1]
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    return order[:-1][same] // 3, order[1:][same] // 3


def _adjacency_matrix(first: np.ndarray, second: np.ndarray, count: int) -> scipy.sparse.csr_matrix:
    ones = np.ones(2 * len(first))
    rows, columns = np.concatenate([first, second]), np.concatenate([second, first])
    return scipy.sparse.csr_matrix((ones, (rows, columns)), shape=(count, count))


def _face_labels(
    area_normals: np.ndarray, units: np.ndarray, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The projection direction of every face, chosen so that charts come out large and few.

    A face takes the direction closest to its normal averaged over a neighbourhood (``DIFFUSION_STEPS``
    rounds of summing area-weighted normals over edge neighbours), which straightens chart borders on
    noisy or creased surfaces, unless its own normal faces that direction with a cosine below
    ``MIN_FACING``; then it keeps its own best direction. Charts of fewer than ``MIN_CHART_FACES`` faces
    then join the neighbouring chart they share most edges with (weighted by its size), face by face where
    the cosine allows. Returns (labels [F], cosines [F, K] of the face normals with the directions).
    """
    count = len(area_normals)
    facing = _unit_rows(area_normals) @ units.T
    spread = _adjacency_matrix(first, second, count) + scipy.sparse.identity(count, format="csr")
    smooth = area_normals
    for _ in range(DIFFUSION_STEPS):
        smooth = spread @ smooth
    rows = np.arange(count)
    labels = np.argmax(_unit_rows(smooth) @ units.T, axis=1)
    labels = np.where(facing[rows, labels] >= MIN_FACING, labels, np.argmax(facing, axis=1))

    both_first, both_second = np.concatenate([first, second]), np.concatenate([second, first])
    for _ in range(MERGE_PASSES):
        charts = _components(count, first, second, labels[first] == labels[second])
        sizes = np.bincount(charts)
        small = sizes[charts] < MIN_CHART_FACES
        border = small[both_first] & (charts[both_first] != charts[both_second])
        if not border.any():
            break
        inner, outer = both_first[border], both_second[border]
        votes = scipy.sparse.coo_matrix(
            (sizes[charts[outer]].astype(np.float64), (charts[inner], labels[outer])),
            shape=(len(sizes), units.shape[0]),
        ).toarray()
        target = np.argmax(votes, axis=1)[charts]
        change = small & (votes[charts, target] > 0) & (facing[rows, target] >= MIN_FACING)
        if not change.any():
            break
        labels = np.where(change, target, labels)
    return labels, facing


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-300)


def _components(count: int, first: np.ndarray, second: np.ndarray, joined: np.ndarray) -> np.ndarray:
    """Connected components [count] of the graph of the face pairs (first, second) where ``joined``."""
    adjacency = _adjacency_matrix(first[joined], second[joined], count)
    return csgraph.connected_components(adjacency, directed=False)[1].astype(np.int64)


def _projection_bases(units: np.ndarray) -> np.ndarray:
    """Per direction d an in-plane basis (u, v) with u x v = d: [K, 2, 3].

    Projected onto (u, v), a face with n . d > 0 is counter-clockwise. v follows world +y where it can
    (so side charts stand upright); for directions near +-y it is -z or +z, like the top and bottom views.
    """
    up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), units.shape).copy()
    near_pole = np.abs(units[:, 1]) > 0.9
    up[near_pole] = np.array([0.0, 0.0, -1.0]) * np.sign(units[near_pole, 1])[:, None]
    v = up - np.sum(up * units, axis=1, keepdims=True) * units
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    u = np.cross(v, units)
    return np.stack([u, v], axis=1)


def _chart_ids(
    labels: np.ndarray, parts: np.ndarray, sliver: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Charts: connected components of edge-adjacent faces with the same label and part; slivers alone."""
    joined = (labels[first] == labels[second]) & (parts[first] == parts[second])
    joined &= ~sliver[first] & ~sliver[second]
    return _components(len(labels), first, second, joined)


class _ChartLayout:
    """UV vertices of every chart in chart-local coordinates (world units), and their packing."""

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        charts: np.ndarray,
        labels: np.ndarray,
        sliver: np.ndarray,
        bases: np.ndarray,
        sliver_size: float,
    ) -> None:
        face_count = len(faces)
        chart_count = int(charts.max()) + 1
        # A UV vertex per (chart, position) corner of ordinary faces; three own corners per sliver face.
        keys = np.repeat(charts, 3) * len(vertices) + faces.ravel()
        keys[np.repeat(sliver, 3)] = -1 - np.flatnonzero(np.repeat(sliver, 3))
        unique_keys, inverse = np.unique(keys, return_inverse=True)
        self.uv_faces = inverse.reshape(face_count, 3).astype(np.int64)

        ordinary = unique_keys >= 0
        self.uv_chart = np.empty(len(unique_keys), dtype=np.int64)
        self.uv_chart[ordinary] = unique_keys[ordinary] // len(vertices)
        self.local = np.empty((len(unique_keys), 2))
        chart_label = np.empty(chart_count, dtype=np.int64)
        chart_label[charts] = labels
        positions = vertices[unique_keys[ordinary] % len(vertices)]
        basis = bases[chart_label[self.uv_chart[ordinary]]].transpose(0, 2, 1)  # [n, 3, 2]
        self.local[ordinary] = (positions[:, None, :] @ basis)[:, 0]

        sliver_faces = np.flatnonzero(sliver)
        sliver_uv = self.uv_faces[sliver_faces]
        self.uv_chart[sliver_uv] = charts[sliver_faces][:, None]
        self.local[sliver_uv] = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]) * sliver_size

        self.low = np.full((chart_count, 2), np.inf)
        self.high = np.full((chart_count, 2), -np.inf)
        np.minimum.at(self.low, self.uv_chart, self.local)
        np.maximum.at(self.high, self.uv_chart, self.local)

    def packed_uvs(self, gap: float) -> np.ndarray:
        """UV coordinates [T, 2] (float64) of the charts packed into the unit square with gutters ``gap``."""
        size = self.high - self.low
        rotated = size[:, 1] > size[:, 0]  # lay tall charts on their side
        extent = np.where(rotated[:, None], size[:, ::-1], size)
        scale, origin = _pack_rectangles(extent, gap)
        relative = self.local - self.low[self.uv_chart]
        turn = rotated[self.uv_chart]
        # A quarter turn counter-clockwise, (x, y) -> (height - y, x), keeps triangles counter-clockwise.
        relative[turn] = np.stack([size[self.uv_chart[turn], 1] - relative[turn, 1], relative[turn, 0]], 1)
        return np.clip(origin[self.uv_chart] + scale * relative, 0.0, 1.0)


def _pack_rectangles(extent: np.ndarray, gap: float) -> tuple[float, np.ndarray]:
    """Shelf-pack rectangles [C, 2] (width, height) scaled by a common factor into the unit square.

    Rectangles are laid out left to right in rows, tallest first, with ``gap`` between them and at the
    border; the largest scale that fits is found by bisection. Returns (scale, lower-left corners [C, 2]).
    """
    order = np.lexsort((np.arange(len(extent)), -extent[:, 0], -extent[:, 1]))
    widths, heights = extent[order, 0].tolist(), extent[order, 1].tolist()
    room = 1.0 - 2.0 * gap
    if room <= 0:
        raise AtlasError(f"projection_atlas: padding leaves no room in the texture (gap {gap:.3g} per side)")
    # No packing can beat the scale at which the largest side, or the total area, fills the square.
    low, high = 0.0, room / max(float(extent.max()), float(np.sqrt(np.sum(extent[:, 0] * extent[:, 1]))))
    for _ in range(PACKING_STEPS):
        middle = 0.5 * (low + high)
        if _shelf_positions(widths, heights, middle, gap) is not None:
            low = middle
        else:
            high = middle
    positions = _shelf_positions(widths, heights, low, gap) if low > 0 else None
    if positions is None:
        raise AtlasError(
            f"projection_atlas: {len(extent)} charts do not fit the texture with gutters of {gap:.3g}"
        )
    origin = np.empty((len(extent), 2))
    origin[order] = positions
    return low, origin


def _shelf_positions(
    widths: list[float], heights: list[float], scale: float, gap: float
) -> list[tuple[float, float]] | None:
    """Lower-left corners of rectangles (sorted by height, tallest first) in rows; None if they overflow."""
    limit = 1.0 - gap
    x, y, row_height = gap, gap, 0.0
    positions = []
    for width, height in zip(widths, heights, strict=True):
        width, height = width * scale, height * scale
        if x + width > limit:
            if x == gap:
                return None
            x, y, row_height = gap, y + row_height + gap, 0.0
        if y + height > limit:
            return None
        positions.append((x, y))
        x += width + gap
        row_height = max(row_height, height)
    return positions


def _thin_at_largest_scale(projected: np.ndarray, gap: float) -> np.ndarray:
    """Faces [F] whose projected triangles [F, 3, 2] would be thinner than ``THIN_MARGIN * MIN_UV_HEIGHT``
    at the largest world-to-UV scale any packing could reach (all projected area filling the square)."""
    double_areas = np.abs(_double_areas(projected))
    largest_scale = (1.0 - 2.0 * gap) / np.sqrt(max(0.5 * double_areas.sum(), 1e-300))
    return _uv_heights(projected) * largest_scale < THIN_MARGIN * MIN_UV_HEIGHT


def _double_areas(triangles: np.ndarray) -> np.ndarray:
    """Signed doubled areas of 2-D triangles [N, 3, 2] (positive when counter-clockwise)."""
    u, v = triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


def _uv_heights(triangles: np.ndarray) -> np.ndarray:
    """Signed smallest height of each 2-D triangle [N, 3, 2] (negative when clockwise)."""
    longest = np.linalg.norm(np.roll(triangles, -1, axis=1) - triangles, axis=2).max(axis=1)
    return _double_areas(triangles) / np.maximum(longest, 1e-300)


def _fold_free_parts(
    labels: np.ndarray,
    sliver: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    projected: np.ndarray,
    cosine: np.ndarray,
) -> np.ndarray:
    """Part ids [F] that cut the charts until no chart's projected triangles overlap each other.

    Overlaps are tested exactly in chart-local coordinates; after a cut only the charts that changed are
    tested again. Raises AtlasError when ``MAX_ROUNDS`` rounds of cutting do not suffice.
    """
    parts = np.zeros(len(labels), dtype=np.int64)
    charts = _chart_ids(labels, parts, sliver, first, second)
    check = ~sliver
    for _ in range(MAX_ROUNDS):
        tested = np.flatnonzero(check & (np.bincount(charts)[charts] > 1))
        overlapping = tested[_overlapping_triangle_pairs(projected[tested], charts[tested])]
        if len(overlapping) == 0:
            return parts
        cut = _separate_folds(parts, charts, overlapping, cosine, projected.mean(axis=1))
        changed = np.zeros(charts.max() + 1, dtype=bool)
        changed[charts[cut != parts]] = True
        check = changed[charts]  # cutting only refines charts, so only faces of changed ones need a test
        parts = cut
        charts = _chart_ids(labels, parts, sliver, first, second)
    raise AtlasError(f"projection_atlas: charts still fold over after {MAX_ROUNDS} rounds of cutting")


def _overlapping_triangle_pairs(triangles: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Index pairs [M, 2] of counter-clockwise triangles [N, 3, 2] of the same group whose interiors overlap.

    Bounding boxes are entered into the cells of a uniform grid (about twice the median triangle size) they
    touch; within a cell, sorted by left edge, each box is swept against the following ones until they
    start right of it. Pairs whose boxes meet are tested once, in the cell holding the lower-left corner of
    the boxes' intersection: two triangles are disjoint when one of their six edges has all three corners
    of the other on or to the right of its line (an exact separating-axis test).
    """
    count = len(triangles)
    xs, ys = np.ascontiguousarray(triangles[:, :, 0]), np.ascontiguousarray(triangles[:, :, 1])
    low_x, high_x, low_y, high_y = xs.min(axis=1), xs.max(axis=1), ys.min(axis=1), ys.max(axis=1)
    cell = 2.0 * float(np.median(np.maximum(high_x - low_x, high_y - low_y))) or 1.0
    while True:
        first_column = np.floor(low_x / cell).astype(np.int64)
        first_row = np.floor(low_y / cell).astype(np.int64)
        columns = np.floor(high_x / cell).astype(np.int64) - first_column + 1
        covered = columns * (np.floor(high_y / cell).astype(np.int64) - first_row + 1)
        if covered.sum() <= _CELL_ENTRIES_PER_TRIANGLE * count:
            break
        cell *= 2.0
    triangle = np.repeat(np.arange(count), covered)
    offset = np.arange(len(triangle)) - np.repeat(np.cumsum(covered) - covered, covered)
    column = first_column[triangle] + offset % columns[triangle]
    row = first_row[triangle] + offset // columns[triangle]
    column_span, row_span = column.max() - column.min() + 1, row.max() - row.min() + 1
    keys = (
        ((groups[triangle] - groups.min()) * column_span + column - column.min()) * row_span + row - row.min()
    )
    order = np.lexsort((low_x[triangle], keys))
    keys, triangle, column, row = keys[order], triangle[order], column[order], row[order]
    left, right, bottom, top = low_x[triangle], high_x[triangle], low_y[triangle], high_y[triangle]

    found = []
    one, shift = np.arange(len(keys) - 1), 1
    while len(one):
        other = one + shift
        reaching = (keys[other] == keys[one]) & (left[other] < right[one])
        one, other = one[reaching], other[reaching]
        meet = (bottom[other] < top[one]) & (bottom[one] < top[other])
        found.append(np.stack([one[meet], other[meet]]))
        shift += 1
        one = one[one + shift < len(keys)]
    one, other = np.concatenate(found, axis=1)
    home = (np.floor(np.maximum(left[one], left[other]) / cell) == column[one]) & (
        np.floor(np.maximum(bottom[one], bottom[other]) / cell) == row[one]
    )
    a, b = triangle[one[home]], triangle[other[home]]
    undecided = ~_separated(xs, ys, a, b)
    a, b = a[undecided], b[undecided]
    undecided = ~_separated(xs, ys, b, a)
    return np.stack([a[undecided], b[undecided]], axis=1)


def _separated(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair, whether an edge of triangle ``a`` has all corners of triangle ``b`` on or right of it."""
    ax, ay, bx, by = xs[a].T, ys[a].T, xs[b].T, ys[b].T  # [3, M] each
    separated = np.zeros(len(a), dtype=bool)
    for start in range(3):
        end = (start + 1) % 3
        edge_x, edge_y = ax[end] - ax[start], ay[end] - ay[start]
        outside = np.ones(len(a), dtype=bool)
        for corner in range(3):
            outside &= edge_x * (by[corner] - ay[start]) - edge_y * (bx[corner] - ax[start]) <= 0.0
        separated |= outside
    return separated


def _separate_folds(
    parts: np.ndarray, charts: np.ndarray, overlapping: np.ndarray, cosine: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """New part ids that break up the charts with overlapping triangle pairs [M, 2].

    Of each pair, the face that faces its direction less is taken out of its chart (a local pleat). A
    chart that would lose more than ``MAX_EJECTED_FRACTION`` of its faces folds over at large: it is cut in
    two at the median face centre (``centres`` [F, 2], chart-local) along its longer side instead.
    """
    parts = parts.copy()
    next_part = int(parts.max()) + 1
    worse = np.where(
        cosine[overlapping[:, 0]] <= cosine[overlapping[:, 1]], overlapping[:, 0], overlapping[:, 1]
    )
    ejected = np.unique(worse)
    chart_sizes = np.bincount(charts)
    ejected_per_chart = np.bincount(charts[ejected], minlength=len(chart_sizes))
    halved = ejected_per_chart > np.maximum(MIN_EJECTED, MAX_EJECTED_FRACTION * chart_sizes)
    single = ejected[~halved[charts[ejected]]]
    parts[single] = next_part + np.arange(len(single))
    next_part += len(single)
    for chart in np.flatnonzero(halved).tolist():
        members = np.flatnonzero(charts == chart)
        local = centres[members]
        axis = int(np.argmax(np.ptp(local, axis=0)))
        order = np.argsort(local[:, axis], kind="stable")
        parts[members[order[len(order) // 2 :]]] = next_part
        next_part += 1
    return parts
