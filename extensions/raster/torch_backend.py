"""Pure-PyTorch rasterizer with nvdiffrast's output layout (CPU and CUDA).

Each triangle's screen-space bounding box is expanded into candidate pixels (in chunks of bounded size),
candidates are tested with edge functions, and one ``scatter_reduce('amin')`` over a packed int64 key
``(depth bits << 32) | face`` keeps the nearest triangle per pixel, ties going to the smallest face id.
Only the winning pixels are then resolved to perspective-correct barycentrics and z/w. All work is
vectorised over faces, candidates and pixels; there are no Python loops over them.

Deviations from nvdiffrast: triangles with any vertex at w <= 0 are dropped instead of clipped against
the near plane (the rest of the frustum clipping is exact, per pixel); ``antialias`` is the identity; no
``rast_db``/``uv_da`` derivatives and no mip-mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Candidate (triangle, pixel) pairs processed per chunk; bounds peak memory to a few hundred MB.
CANDIDATES_PER_CHUNK = 4_000_000
_EDGE_SLACK_ULPS = 16 * 2.0**-24
_EMPTY_KEY = torch.iinfo(torch.int64).max
_INDEX_BITS = 0xFFFFFFFF
# Triangle ids above 2^24 are stored through float bits, as nvdiffrast does, so they stay unique.
_LARGE_ID_LIMIT = 1 << 24
_LARGE_ID_BIAS = 0x4A800000


def encode_triangle_ids(ids: torch.Tensor) -> torch.Tensor:
    """int64 ids (triangle index + 1, 0 = empty) to the float32 values stored in ``rast[..., 3]``."""
    small = ids.to(torch.float32)
    large = (ids.clamp_min(_LARGE_ID_LIMIT) + _LARGE_ID_BIAS).to(torch.int32).view(torch.float32)
    return torch.where(ids <= _LARGE_ID_LIMIT, small, large)


def decode_triangle_ids(values: torch.Tensor) -> torch.Tensor:
    """``rast[..., 3]`` float32 values to int64 ids (triangle index + 1, 0 = empty)."""
    small = values.to(torch.int64)
    large = values.contiguous().view(torch.int32).to(torch.int64) - _LARGE_ID_BIAS
    return torch.where(values <= float(_LARGE_ID_LIMIT), small, large)


def _check_rasterize_inputs(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> None:
    if pos.ndim != 3 or pos.shape[-1] != 4:
        raise ValueError(f"rasterize: pos must be clip-space [B, V, 4], got shape {tuple(pos.shape)}")
    if tri.ndim != 2 or tri.shape[-1] != 3 or tri.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"rasterize: tri must be int32/int64 [F, 3], got {tri.dtype} {tuple(tri.shape)}")
    if len(resolution) != 2 or min(resolution) < 1:
        raise ValueError(f"rasterize: resolution must be (H, W) with positive sizes, got {resolution}")
    if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= pos.shape[1]):
        raise ValueError(f"rasterize: tri indices must lie in [0, {pos.shape[1]})")
    if pos.shape[0] * tri.shape[0] >= 1 << 32:
        raise ValueError("rasterize: at most 2^32 - 1 triangles over all views are supported")


@dataclass
class _Faces:
    """Screen-space setup of the K drawable (view, face) pairs, as 1-D tensors (contiguous for fast ops).

    ``edges`` holds, for vertices k = 0..2, the constants, x slopes and y slopes of the edge functions
    divided by twice the signed area: evaluated at a pixel offset (dx, dy) from the box origin they are the
    screen-space barycentrics, >= 0 inside for either winding; ``inside_constants`` are the constants plus
    their rounding slack over the box, used by the coverage test (see ``_face_setup``). ``depth`` is the z/w plane (constant, x
    slope, y slope), ``inv_w`` the corners' 1 / w, ``origin`` the flat pixel index (view included) of the
    box corner, and ``face`` the triangle index. Entries are ordered by (view, face).
    """

    edges: list[torch.Tensor]
    inside_constants: list[torch.Tensor]
    depth: list[torch.Tensor]
    inv_w: list[torch.Tensor]
    face: torch.Tensor
    origin: torch.Tensor
    box_w: torch.Tensor
    box_h: torch.Tensor

    def __len__(self) -> int:
        return self.face.shape[0]


def _corner_channels(pos: torch.Tensor, tri: torch.Tensor) -> list[list[torch.Tensor]]:
    """``result[k][c]``: channel c of corner k of every (view, face), as 1-D tensors over B * F."""
    views, vertex_count, _ = pos.shape
    face_count = tri.shape[0]
    view_base = torch.arange(views, device=pos.device).repeat_interleave(face_count) * vertex_count
    channels = pos.reshape(-1, 4).T.contiguous()
    corners = []
    for k in range(3):
        index = tri[:, k].repeat(views) + view_base
        corners.append([channels[c].index_select(0, index) for c in range(4)])
    return corners


def _face_setup(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int) -> _Faces:
    """Project every (view, face), drop those that cannot cover a pixel, and build their edge planes."""
    face_count = tri.shape[0]
    corners = _corner_channels(pos, tri)
    in_front = (corners[0][3] > 0) & (corners[1][3] > 0) & (corners[2][3] > 0)
    sx, sy, sz, inv_w = [], [], [], []
    for x, y, z, w in corners:
        inverse = 1.0 / w
        sx.append((x * inverse + 1.0) * (0.5 * width) - 0.5)  # pixel column px sits at sx == px
        sy.append((y * inverse + 1.0) * (0.5 * height) - 0.5)
        sz.append(z * inverse)
        inv_w.append(inverse)
    x_min = torch.minimum(torch.minimum(sx[0], sx[1]), sx[2]).ceil_().clamp_min_(0)
    x_max = torch.maximum(torch.maximum(sx[0], sx[1]), sx[2]).floor_().clamp_max_(width - 1)
    y_min = torch.minimum(torch.minimum(sy[0], sy[1]), sy[2]).ceil_().clamp_min_(0)
    y_max = torch.maximum(torch.maximum(sy[0], sy[1]), sy[2]).floor_().clamp_max_(height - 1)
    box_w, box_h = x_max - x_min + 1, y_max - y_min + 1
    area2 = (sx[1] - sx[0]) * (sy[2] - sy[0]) - (sx[2] - sx[0]) * (sy[1] - sy[0])
    # NaN boxes fail these comparisons too; zero-area faces cover nothing.
    drawable = in_front & (box_w > 0) & (box_h > 0) & (area2 != 0) & torch.isfinite(area2)
    drawable = drawable.nonzero().squeeze(1)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.index_select(0, drawable)

    x_min, y_min = pick(x_min), pick(y_min)
    # Vertices relative to the box origin keep the edge functions small and precise in float32.
    x0, x1, x2 = (pick(v) - x_min for v in sx)
    y0, y1, y2 = (pick(v) - y_min for v in sy)
    # E_k(p) = cross(v_next - p, v_prev - p) is twice the area of (p, v_next, v_prev).
    edges = [x1 * y2 - y1 * x2, x2 * y0 - y2 * x0, x0 * y1 - y0 * x1]
    magnitudes = [(x1 * y2).abs_() + (y1 * x2).abs_(), (x2 * y0).abs_() + (y2 * x0).abs_()]
    magnitudes.append((x0 * y1).abs_() + (y0 * x1).abs_())
    inv_area = 1.0 / (edges[0] + edges[1] + edges[2])
    inv_area = torch.where(torch.isfinite(inv_area), inv_area, torch.nan)  # NaN planes never pass the test
    edges += [y1 - y2, y2 - y0, y0 - y1]  # d E_k / dx
    edges += [x2 - x1, x0 - x2, x1 - x0]  # d E_k / dy
    edges = [edge.mul_(inv_area) for edge in edges]
    # Rounding slack of each edge function over the box: two faces sharing an edge evaluate it with different
    # roundings, so a pixel centre on the edge could fail both strict tests and leave a crack in a closed mesh.
    # Accepting E_k >= -slack_k (a few ulps of the terms' magnitudes) makes both cover it; the depth test then
    # keeps one. Silhouettes grow by about 1e-6 of a triangle, far below a pixel.
    box_w_f, box_h_f = pick(box_w), pick(box_h)
    slack = [
        (
            magnitudes[k].mul_(inv_area.abs()) + edges[3 + k].abs() * box_w_f + edges[6 + k].abs() * box_h_f
        ).mul_(_EDGE_SLACK_ULPS)
        for k in range(3)
    ]
    z0, z1, z2 = (pick(v) for v in sz)
    depth = [edges[i] * z0 + edges[i + 1] * z1 + edges[i + 2] * z2 for i in (0, 3, 6)]  # z/w is affine

    view = torch.div(drawable, max(face_count, 1), rounding_mode="floor")
    return _Faces(
        edges=edges,
        inside_constants=[edges[k] + slack[k] for k in range(3)],
        depth=depth,
        inv_w=[pick(v) for v in inv_w],
        face=drawable - view * face_count,
        origin=view * (height * width) + y_min.long() * width + x_min.long(),
        box_w=pick(box_w).long(),
        box_h=pick(box_h).long(),
    )


def _chunks(counts: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Split faces into consecutive ranges of at most ``budget`` candidates each (at least one face)."""
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if len(ends) else 0
    if total <= budget:
        return [(0, len(counts))] if total else []
    ranges, start, done = [], 0, 0
    while start < len(counts):
        stop = max(int(torch.searchsorted(ends, done + budget, right=True)), start + 1)
        ranges.append((start, stop))
        done = int(ends[stop - 1])
        start = stop
    return ranges


def _depth_test(faces: _Faces, zbuf: torch.Tensor, width: int, start: int, stop: int) -> None:
    """Expand faces [start, stop) into candidate pixels and fold the covered ones into the depth buffer.

    The packed key is ``(bits of z01) << 32 | setup index``: non-negative float32 values order like their
    bit patterns, and the setup index orders like the face id within a view, so ``amin`` keeps the nearest
    surface and, at equal depth, the smallest face id.
    """
    device = zbuf.device
    box_w = faces.box_w[start:stop]
    counts = box_w * faces.box_h[start:stop]
    total = int(counts.sum())
    local = torch.repeat_interleave(torch.arange(stop - start, device=device), counts, output_size=total)

    def per_candidate(values: torch.Tensor) -> torch.Tensor:
        return values[start:stop].index_select(0, local)

    # Offsets (dx, dy) inside each box, in floating point; float32 is exact while offset + 0.5 is (a single
    # huge face can exceed the chunk budget, then float64 is used).
    dtype = torch.float32 if total < 1 << 22 else torch.float64
    first = (torch.cumsum(counts, 0) - counts).to(dtype)
    offset = torch.arange(total, device=device, dtype=dtype)
    offset -= first.index_select(0, local)
    cand_w = box_w.to(dtype).index_select(0, local)
    dy = (offset + 0.5).div_(cand_w).floor_()
    dx = offset.addcmul_(dy, cand_w, value=-1.0).to(torch.float32)
    dy = dy.to(torch.float32)

    lowest = None
    for k in range(3):
        edge = per_candidate(faces.inside_constants[k])
        edge.addcmul_(per_candidate(faces.edges[3 + k]), dx).addcmul_(per_candidate(faces.edges[6 + k]), dy)
        lowest = edge if lowest is None else torch.minimum(lowest, edge, out=lowest)
    hit = (lowest >= 0).nonzero().squeeze(1)

    index = local.index_select(0, hit) + start
    hit_dx, hit_dy = dx.index_select(0, hit), dy.index_select(0, hit)
    depth = faces.depth[0].index_select(0, index)
    depth.addcmul_(faces.depth[1].index_select(0, index), hit_dx)
    depth.addcmul_(faces.depth[2].index_select(0, index), hit_dy)
    clipped = depth.abs() > 1.0  # outside the near/far planes: per-pixel frustum clipping
    depth01 = depth.mul_(0.5).add_(0.5).clamp_(0.0, 1.0)
    key = (depth01.view(torch.int32).to(torch.int64) << 32) | index
    key.masked_fill_(clipped, _EMPTY_KEY)
    pixel = faces.origin.index_select(0, index)
    pixel += hit_dy.to(torch.int64) * width + hit_dx.to(torch.int64)
    zbuf.scatter_reduce_(0, pixel, key, reduce="amin")


def _resolve(faces: _Faces, zbuf: torch.Tensor, views: int, height: int, width: int) -> torch.Tensor:
    """Perspective-correct barycentrics, z/w and triangle id of the winning face at each covered pixel."""
    rast = torch.zeros(views * height * width, 4, dtype=torch.float32, device=zbuf.device)
    pixel = (zbuf != _EMPTY_KEY).nonzero().squeeze(1)
    index = zbuf.index_select(0, pixel) & _INDEX_BITS

    def gather(values: torch.Tensor) -> torch.Tensor:
        return values.index_select(0, index)

    step = pixel - gather(faces.origin)  # dy * width + dx, with 0 <= dx < width
    dy = torch.div(step, width, rounding_mode="floor")
    dx = (step - dy * width).to(torch.float32)
    dy = dy.to(torch.float32)
    weights = []
    for k in range(3):
        screen = gather(faces.edges[k]).addcmul_(gather(faces.edges[3 + k]), dx)
        screen.addcmul_(gather(faces.edges[6 + k]), dy).clamp_min_(0.0)
        weights.append(screen.mul_(gather(faces.inv_w[k])))  # screen barycentric / w: perspective-correct
    total = weights[0] + weights[1] + weights[2]
    depth = gather(faces.depth[0]).addcmul_(gather(faces.depth[1]), dx).addcmul_(gather(faces.depth[2]), dy)

    rast[:, 0].index_copy_(0, pixel, weights[0].div_(total))
    rast[:, 1].index_copy_(0, pixel, weights[1].div_(total))
    rast[:, 2].index_copy_(0, pixel, depth.clamp_(-1.0, 1.0))
    rast[:, 3].index_copy_(0, pixel, encode_triangle_ids(gather(faces.face) + 1))
    return rast.reshape(views, height, width, 4)


@torch.no_grad()
def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """Rasterize clip-space triangles to ``rast`` [B, H, W, 4] in nvdiffrast's layout (row 0 = bottom)."""
    _check_rasterize_inputs(pos, tri, resolution)
    height, width = int(resolution[0]), int(resolution[1])
    pos = pos.detach().to(torch.float32).contiguous()
    tri = tri.to(device=pos.device, dtype=torch.int64)
    views = pos.shape[0]
    zbuf = torch.full((views * height * width,), _EMPTY_KEY, dtype=torch.int64, device=pos.device)
    faces = _face_setup(pos, tri, height, width)
    for start, stop in _chunks(faces.box_w * faces.box_h, CANDIDATES_PER_CHUNK):
        _depth_test(faces, zbuf, width, start, stop)
    return _resolve(faces, zbuf, views, height, width)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolate vertex attributes [V, C] or [B|1, V, C] over ``rast``; zero where empty."""
    if attr.ndim == 2:
        attr = attr[None]
    if attr.ndim != 3:
        raise ValueError(f"interpolate: attr must be [V, C] or [B|1, V, C], got shape {tuple(attr.shape)}")
    if rast.ndim != 4 or rast.shape[-1] != 4:
        raise ValueError(f"interpolate: rast must be [B, H, W, 4], got shape {tuple(rast.shape)}")
    views, height, width, _ = rast.shape
    if attr.shape[0] not in (1, views):
        raise ValueError(f"interpolate: attr batch {attr.shape[0]} must be 1 or match rast batch {views}")
    if tri.ndim != 2 or tri.shape[-1] != 3:
        raise ValueError(f"interpolate: tri must be [F, 3], got shape {tuple(tri.shape)}")
    tri = tri.to(device=rast.device, dtype=torch.int64)
    vertex_count, channels = attr.shape[1], attr.shape[2]
    ids = decode_triangle_ids(rast[..., 3].reshape(-1)) - 1
    pixel = ((ids >= 0) & (ids < tri.shape[0])).nonzero().squeeze(1)
    corners = tri.index_select(0, ids.index_select(0, pixel))  # [P, 3]
    if attr.shape[0] > 1:
        corners += (torch.div(pixel, height * width, rounding_mode="floor") * vertex_count)[:, None]
    table = attr.reshape(-1, channels)
    first, second, third = (table.index_select(0, corners[:, k]) for k in range(3))
    bary = rast.reshape(-1, 4).index_select(0, pixel)
    mixed = torch.addcmul(third, bary[:, 0:1], first - third)
    mixed = torch.addcmul(mixed, bary[:, 1:2], second - third)
    out = torch.zeros(views * height * width, channels, dtype=mixed.dtype, device=rast.device)
    return out.index_copy(0, pixel, mixed).reshape(views, height, width, channels)


def texture(
    tex: torch.Tensor, uv: torch.Tensor, filter_mode: str = "linear", boundary_mode: str = "wrap"
) -> torch.Tensor:
    """Sample ``tex`` [B|1, Ht, Wt, C] (row 0 at v = 0) at ``uv`` [B, H, W, 2]; returns [B, H, W, C]."""
    if tex.ndim != 4:
        raise ValueError(f"texture: tex must be [B, H, W, C], got shape {tuple(tex.shape)}")
    if uv.ndim != 4 or uv.shape[-1] != 2:
        raise ValueError(f"texture: uv must be [B, H, W, 2], got shape {tuple(uv.shape)}")
    if tex.shape[0] not in (1, uv.shape[0]):
        raise ValueError(f"texture: tex batch {tex.shape[0]} must be 1 or match uv batch {uv.shape[0]}")
    if filter_mode not in ("linear", "nearest"):
        raise ValueError(f"texture: filter_mode must be 'linear' or 'nearest', got {filter_mode!r}")
    if boundary_mode not in ("wrap", "clamp", "zero"):
        raise ValueError(f"texture: boundary_mode must be 'wrap', 'clamp' or 'zero', got {boundary_mode!r}")
    tex = tex.expand(uv.shape[0], -1, -1, -1)
    if filter_mode == "nearest":
        return _texture_nearest(tex, uv, boundary_mode)
    return _texture_linear(tex, uv, boundary_mode)


def _texture_linear(tex: torch.Tensor, uv: torch.Tensor, boundary_mode: str) -> torch.Tensor:
    image = tex.permute(0, 3, 1, 2)
    tex_h, tex_w = tex.shape[1], tex.shape[2]
    if boundary_mode == "wrap":
        # Wrap the coordinate into [0, 1) and pad one texel circularly, so the taps at -1 and W wrap too.
        uv = uv - uv.floor()
        image = F.pad(image, (1, 1, 1, 1), mode="circular")
        scale = uv.new_tensor([tex_w, tex_h])
        grid = (uv * scale + 1.0) / (scale + 2.0) * 2.0 - 1.0
        padding = "border"
    else:
        grid = uv * 2.0 - 1.0
        padding = "border" if boundary_mode == "clamp" else "zeros"
    out = F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode=padding, align_corners=False
    )
    return out.permute(0, 2, 3, 1)


def _texture_nearest(tex: torch.Tensor, uv: torch.Tensor, boundary_mode: str) -> torch.Tensor:
    batch, tex_h, tex_w, channels = tex.shape
    col = (uv[..., 0] * tex_w).floor().long()
    row = (uv[..., 1] * tex_h).floor().long()
    if boundary_mode == "wrap":
        col, row = col.remainder(tex_w), row.remainder(tex_h)
        valid = None
    else:
        valid = (col >= 0) & (col < tex_w) & (row >= 0) & (row < tex_h)
        col, row = col.clamp(0, tex_w - 1), row.clamp(0, tex_h - 1)
    view = torch.arange(batch, device=uv.device).reshape(-1, 1, 1)
    out = tex.reshape(-1, channels)[(view * tex_h + row) * tex_w + col]
    if boundary_mode == "zero":
        out = out * valid[..., None].to(out.dtype)
    return out


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Identity: silhouette antialiasing is not implemented on the torch backend (documented deviation)."""
    del rast, pos, tri
    return color
