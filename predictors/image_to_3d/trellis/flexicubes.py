"""FlexiCubes mesh extraction from the TRELLIS mesh decoder's per-voxel output (dual marching cubes).

Each active voxel of the decoder's grid (resolution R, 256 for image-large) carries 101 channels:
``sdf`` 0:8 (per corner), ``deform`` 8:32 (corner x xyz), ``weights`` 32:53 (12 edge β, 8 corner α, 1 γ)
and ``color`` 53:101 (corner x 6: RGB and a normal map). Corner c sits at offset (c & 1, c >> 1 & 1,
c >> 2 & 1). Per-corner values are averaged onto the shared grid vertices; grid vertices no voxel touches
have sdf 1 (outside), no deformation and colour logits 0. A bias of -1/R is added to every sdf.

Inside is sdf < 0. Every cube with corners of both signs emits one dual vertex per surface patch: the
β-weighted mean of its edges' crossing points, each found by linear interpolation of the α-weighted sdf.
Colours (sigmoid of the logits) are interpolated the same way. Every grid edge with a sign change that lies
inside the grid joins the dual vertices of its four cubes into a quad, wound so that its normal points to
the outside, and split along the diagonal whose product of the cubes' γ is larger.

Surface patches (the case table) are generated here: on each cube face the crossing edges are paired along
the face (on a face with four crossings, each inside corner is cut off by its own segment), and the
resulting closed loops on the cube's surface are the patches. Both cubes that share a face make the same
choice, so the mesh is closed and consistently wound without the neighbour check of the original tables;
in ambiguous cases its topology may differ from the original's. Where both cubes of an ambiguous face join
its two segments through their interiors, the two quads' shared edge gets four faces (a non-manifold edge,
as in plain dual marching cubes); smooth fields rarely do this.

Only cubes next to a vertex with negative sdf are visited (sparse hashing of packed integer keys), so memory
grows with the number of active voxels, not with R³.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SDF = slice(0, 8)
DEFORM = slice(8, 32)
WEIGHTS = slice(32, 53)
COLOR = slice(53, 101)
CHANNELS = 101
WEIGHT_SCALE = 0.99  # FlexiCubes' default squashing of the β, α and γ weights

# Corner c of a cube is at offset (c & 1, (c >> 1) & 1, (c >> 2) & 1).
CORNER_OFFSETS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=np.int64)
# The 12 cube edges as corner pairs, in the order of the β weights (FlexiCubes' edge order).
CUBE_EDGES = np.array(
    [[0, 1], [1, 5], [4, 5], [0, 4], [2, 3], [3, 7], [6, 7], [2, 6], [2, 0], [3, 1], [7, 5], [6, 4]],
    dtype=np.int64,
)


@dataclass
class ExtractedMesh:
    """A FlexiCubes result in the decoder's frame (z-up, inside [-0.5, 0.5]³)."""

    vertices: torch.Tensor  # float32 [V, 3]
    faces: torch.Tensor  # int64 [F, 3], counter-clockwise seen from outside
    colors: torch.Tensor  # float32 [V, C] in [0, 1] (RGB, then normal map)


def _edge_index() -> dict[tuple[int, int], int]:
    return {tuple(sorted(pair)): index for index, pair in enumerate(CUBE_EDGES.tolist())}


def _cube_faces() -> list[list[int]]:
    """The 6 faces as 4 corners in cyclic order."""
    faces = []
    for axis in range(3):
        first, second = [a for a in range(3) if a != axis]
        for side in (0, 1):
            cycle = [(0, 0), (1, 0), (1, 1), (0, 1)]
            faces.append([(side << axis) | (u << first) | (v << second) for u, v in cycle])
    return faces


def build_patch_table() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 corner-sign cases (bit c set = corner c inside): the patch of each edge.

    Returns ``edge_patch`` int64 [256, 12] (patch index within the cube, -1 where the edge has no crossing)
    and ``patch_count`` int64 [256].
    """
    edge_of = _edge_index()
    faces = _cube_faces()
    edge_patch = np.full((256, 12), -1, dtype=np.int64)
    patch_count = np.zeros(256, dtype=np.int64)
    for case in range(256):
        inside = [(case >> c) & 1 == 1 for c in range(8)]
        parent = list(range(12))

        def find(e: int, parent: list[int] = parent) -> int:
            while parent[e] != e:
                parent[e] = parent[parent[e]]
                e = parent[e]
            return e

        for corners in faces:
            sides = [(corners[k], corners[(k + 1) % 4]) for k in range(4)]
            crossing = [edge_of[tuple(sorted(s))] for s in sides if inside[s[0]] != inside[s[1]]]
            if len(crossing) == 2:
                pairs = [crossing]
            elif len(crossing) == 4:  # alternating signs: cut off each inside corner on its own
                pairs = []
                for k, corner in enumerate(corners):
                    if inside[corner]:
                        before, after = sides[(k - 1) % 4], sides[k]
                        pairs.append([edge_of[tuple(sorted(before))], edge_of[tuple(sorted(after))]])
            else:
                pairs = []
            for a, b in pairs:
                parent[find(a)] = find(b)
        roots: dict[int, int] = {}
        for edge, (a, b) in enumerate(CUBE_EDGES.tolist()):
            if inside[a] != inside[b]:
                edge_patch[case, edge] = roots.setdefault(find(edge), len(roots))
        patch_count[case] = len(roots)
    return edge_patch, patch_count


EDGE_PATCH, PATCH_COUNT = build_patch_table()


def _keys(points: torch.Tensor, side: int) -> torch.Tensor:
    """Packed int64 keys of integer points [..., 3] in [0, side)³."""
    return (points[..., 0] * side + points[..., 1]) * side + points[..., 2]


def _lookup(sorted_keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Index of each query in ``sorted_keys``, or -1 where it is absent."""
    position = torch.searchsorted(sorted_keys, queries).clamp_max(max(len(sorted_keys) - 1, 0))
    found = (
        sorted_keys[position] == queries if len(sorted_keys) else torch.zeros_like(queries, dtype=torch.bool)
    )
    return torch.where(found, position, torch.full_like(position, -1))


def _empty(channels: int, device: torch.device) -> ExtractedMesh:
    return ExtractedMesh(
        torch.zeros(0, 3, device=device),
        torch.zeros(0, 3, dtype=torch.long, device=device),
        torch.zeros(0, channels, device=device),
    )


@torch.no_grad()
def extract_mesh(coords: torch.Tensor, feats: torch.Tensor, resolution: int = 256) -> ExtractedMesh:
    """Mesh of the decoder output: ``coords`` int [N, 3] voxel indices in [0, R)³, ``feats`` [N, 101].

    Raises:
        ValueError: wrong shapes or coordinates outside the grid.
    """
    if coords.ndim != 2 or coords.shape[1] != 3 or feats.shape != (coords.shape[0], CHANNELS):
        raise ValueError(
            f"extract_mesh: need coords [N, 3] and feats [N, {CHANNELS}], got {tuple(coords.shape)} and "
            f"{tuple(feats.shape)}"
        )
    device = feats.device
    coords = coords.long().to(device)
    if len(coords) and (coords.min() < 0 or coords.max() >= resolution):
        raise ValueError(f"extract_mesh: coords must lie in [0, {resolution})")
    feats = feats.float()
    color_channels = (COLOR.stop - COLOR.start) // 8
    side = resolution + 1
    corner_offsets = torch.from_numpy(CORNER_OFFSETS).to(device)

    # Average the per-corner values of the voxels onto the grid vertices they share.
    per_corner = torch.cat(
        [
            feats[:, SDF].reshape(-1, 8, 1) - 1.0 / resolution,
            feats[:, DEFORM].reshape(-1, 8, 3),
            feats[:, COLOR].reshape(-1, 8, color_channels),
        ],
        dim=-1,
    )
    corner_keys = _keys(coords[:, None, :] + corner_offsets, side).reshape(-1)
    vertex_keys, inverse = torch.unique(corner_keys, return_inverse=True)
    sums = torch.zeros(len(vertex_keys), per_corner.shape[-1], device=device)
    sums.index_add_(0, inverse, per_corner.reshape(len(corner_keys), -1))
    counts = torch.bincount(inverse, minlength=len(vertex_keys)).clamp_min(1)
    attributes = sums / counts[:, None]

    # Cubes that can hold surface: the (in-grid) cubes around every vertex with negative sdf.
    vertex_points = torch.stack([vertex_keys // side**2, vertex_keys // side % side, vertex_keys % side], -1)
    negative = vertex_points[attributes[:, 0] < 0]
    origins = (negative[:, None, :] - corner_offsets).reshape(-1, 3)
    origins = origins[((origins >= 0) & (origins < resolution)).all(dim=-1)]
    cube_keys = torch.unique(_keys(origins, resolution))
    cubes = torch.stack(
        [cube_keys // resolution**2, cube_keys // resolution % resolution, cube_keys % resolution], -1
    )

    # Corner attributes of those cubes; vertices no voxel touches are outside (sdf 1) and undeformed.
    cube_corner_points = cubes[:, None, :] + corner_offsets  # [M, 8, 3]
    vertex_row = _lookup(vertex_keys, _keys(cube_corner_points, side))
    defaults = torch.zeros(per_corner.shape[-1], device=device)
    defaults[0] = 1.0
    corner_attrs = torch.where((vertex_row >= 0)[..., None], attributes[vertex_row.clamp_min(0)], defaults)
    sdf = corner_attrs[..., 0]  # [M, 8]
    inside = sdf < 0
    case = (inside.long() << torch.arange(8, device=device)).sum(-1)
    surface = (case > 0) & (case < 255)
    cubes, cube_keys, case = cubes[surface], cube_keys[surface], case[surface]
    corner_attrs, sdf, cube_corner_points = corner_attrs[surface], sdf[surface], cube_corner_points[surface]
    if len(cubes) == 0:
        return _empty(color_channels, device)
    positions = (
        cube_corner_points.float() / resolution
        - 0.5
        + (1 - 1e-8) / (2 * resolution) * torch.tanh(corner_attrs[..., 1:4])
    )
    colours = torch.sigmoid(corner_attrs[..., 4:])

    # Per-cube weights of the active voxels; other cubes have zero logits (β = α = 1, γ = 1/2).
    voxel_keys, voxel_order = torch.sort(_keys(coords, resolution))
    voxel_row = _lookup(voxel_keys, cube_keys)
    logits = torch.where(
        (voxel_row >= 0)[:, None],
        feats[voxel_order[voxel_row.clamp_min(0)], WEIGHTS],
        torch.zeros((), device=device),
    )
    beta = torch.tanh(logits[:, :12]) * WEIGHT_SCALE + 1
    alpha = torch.tanh(logits[:, 12:20]) * WEIGHT_SCALE + 1
    gamma = torch.sigmoid(logits[:, 20]) * WEIGHT_SCALE + (1 - WEIGHT_SCALE) / 2

    vertices, vertex_colours, dual_index = _dual_vertices(case, sdf, positions, colours, alpha, beta)
    faces = _quads_to_triangles(cubes, cube_keys, case, sdf, dual_index, gamma, resolution)
    used, faces = torch.unique(faces, return_inverse=True)
    return ExtractedMesh(vertices[used], faces.reshape(-1, 3), vertex_colours[used])


def _dual_vertices(
    case: torch.Tensor,
    sdf: torch.Tensor,
    positions: torch.Tensor,
    colours: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dual vertices, their colours, and ``dual_index`` [M, 12]: the dual vertex of each crossing edge (-1)."""
    device = case.device
    edge_patch = torch.from_numpy(EDGE_PATCH).to(device)[case]  # [M, 12]
    patch_count = torch.from_numpy(PATCH_COUNT).to(device)[case]
    first = torch.cumsum(patch_count, 0) - patch_count
    dual_index = torch.where(edge_patch >= 0, first[:, None] + edge_patch, -1)
    cube, edge = torch.nonzero(edge_patch >= 0, as_tuple=True)
    ends = torch.from_numpy(CUBE_EDGES).to(device)[edge]  # [K, 2] corner indices
    weight = sdf[cube[:, None], ends] * alpha[cube[:, None], ends]  # [K, 2]
    # Zero crossing of the α-weighted sdf: (w1 x0 - w0 x1) / (w1 - w0).
    mix = torch.stack([weight[:, 1], -weight[:, 0]], dim=1) / (weight[:, 1] - weight[:, 0])[:, None]
    crossing = (mix[..., None] * positions[cube[:, None], ends]).sum(1)
    crossing_colour = (mix[..., None] * colours[cube[:, None], ends]).sum(1)
    edge_beta = beta[cube, edge][:, None]
    target = dual_index[cube, edge]
    count = int(patch_count.sum())
    beta_sum = torch.zeros(count, 1, device=device).index_add_(0, target, edge_beta)
    vertices = torch.zeros(count, 3, device=device).index_add_(0, target, crossing * edge_beta) / beta_sum
    vertex_colours = (
        torch.zeros(count, colours.shape[-1], device=device).index_add_(
            0, target, crossing_colour * edge_beta
        )
        / beta_sum
    )
    return vertices, vertex_colours.clamp(0.0, 1.0), dual_index


def _ring_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each axis: the 4 cube offsets around an edge, counter-clockwise about the axis, and the local
    edge index of that grid edge in each of those cubes."""
    edge_of = _edge_index()
    offsets = np.zeros((3, 4, 3), dtype=np.int64)
    local = np.zeros((3, 4), dtype=np.int64)
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3  # (u, v, axis) is right-handed
        for k, (du, dv) in enumerate([(0, 0), (-1, 0), (-1, -1), (0, -1)]):
            offsets[axis, k, u], offsets[axis, k, v] = du, dv
            base = ((-du) << u) | ((-dv) << v)
            local[axis, k] = edge_of[tuple(sorted((base, base | (1 << axis))))]
    return offsets, local


RING_OFFSETS, RING_EDGES = _ring_tables()


def _quads_to_triangles(
    cubes: torch.Tensor,
    cube_keys: torch.Tensor,
    case: torch.Tensor,
    sdf: torch.Tensor,
    dual_index: torch.Tensor,
    gamma: torch.Tensor,
    resolution: int,
) -> torch.Tensor:
    """Triangles [F, 3] of the quads around every crossing grid edge whose four cubes are in the grid."""
    device = cubes.device
    offsets = torch.from_numpy(RING_OFFSETS).to(device)
    ring_edges = torch.from_numpy(RING_EDGES).to(device)
    triangles = []
    for axis in range(3):
        first_edge = int(RING_EDGES[axis, 0])  # the edge from the cube's corner 0 along ``axis``
        cube = torch.nonzero(dual_index[:, first_edge] >= 0, as_tuple=True)[0]
        ring_cubes = cubes[cube][:, None, :] + offsets[axis]  # [Q, 4, 3]
        in_grid = ((ring_cubes >= 0) & (ring_cubes < resolution)).all(dim=-1).all(dim=-1)
        cube, ring_cubes = cube[in_grid], ring_cubes[in_grid]
        row = _lookup(cube_keys, _keys(ring_cubes, resolution))
        if (row < 0).any():
            raise RuntimeError("flexicubes: a cube around a crossing edge was not visited")
        quad = dual_index[row, ring_edges[axis]]  # [Q, 4], counter-clockwise about +axis
        # The ring's normal is +axis; keep it when the inside is at the low end of the edge.
        outward = sdf[cube, 0] < 0
        quad = torch.where(outward[:, None], quad, quad.flip(1))
        quad_gamma = gamma[row]
        quad_gamma = torch.where(outward[:, None], quad_gamma, quad_gamma.flip(1))
        split_02 = quad_gamma[:, 0] * quad_gamma[:, 2] > quad_gamma[:, 1] * quad_gamma[:, 3]
        along_02 = torch.stack([quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]], 1)
        along_13 = torch.stack([quad[:, [0, 1, 3]], quad[:, [1, 2, 3]]], 1)
        triangles.append(torch.where(split_02[:, None, None], along_02, along_13).reshape(-1, 3))
    return torch.cat(triangles)
