"""Triangle rasterization with nvdiffrast's semantics.

API (all tensors float32 unless noted; ``B`` = batch of views):

* ``rasterize(pos, tri, resolution) -> rast [B, H, W, 4]``: ``pos`` is clip space [B, V, 4], ``tri`` int32/int64
  [F, 3], ``resolution`` (H, W). Channels: perspective-correct barycentrics (u, v) of the first and second
  vertex, z/w, and triangle id + 1 (0 = empty). Row 0 is the **bottom** row; pixel centres are at +0.5.
  No back-face culling; triangles with a vertex at w <= 0 are dropped (no near-plane clipping).
* ``interpolate(attr, rast, tri) -> [B, H, W, C]``: ``attr`` [V, C] or [B|1, V, C]; ``tri`` may be a second index
  buffer with the same face count (UV seams). Zero where empty.
* ``texture(tex, uv, filter_mode='linear', boundary_mode='wrap') -> [B, H, W, C]``: ``tex`` [B|1, Ht, Wt, C] with row
  0 at v = 0, ``uv`` [B, H, W, 2]; bilinear or nearest sampling with wrap/clamp/zero boundaries.
* ``antialias(color, rast, pos, tri) -> color``: silhouette-edge blending (identity on the torch backend).
* ``decode_triangle_ids(rast_channel) -> int64``: triangle id + 1 from ``rast[..., 3]`` (0 = empty), including the
  float-bit encoding nvdiffrast uses for ids above 2^24.

The backend is chosen per call: nvdiffrast when it is installed and the tensors are on CUDA, otherwise the
pure-PyTorch backend (CPU and CUDA). ``RASTER_BACKEND=torch`` forces the torch backend.
"""

from extensions.raster.dispatch import antialias, backend_name, interpolate, rasterize, texture
from extensions.raster.torch_backend import decode_triangle_ids

__all__ = ["antialias", "backend_name", "decode_triangle_ids", "interpolate", "rasterize", "texture"]
