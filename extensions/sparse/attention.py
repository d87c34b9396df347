"""Attention over ``SparseTensor`` sequences: full variable-length and windowed (shifted) self-attention.

Each batch element of a ``SparseTensor`` is one sequence (its rows, in order). The pure-PyTorch path uses
``F.scaled_dot_product_attention``; ``flash_attn``'s varlen kernels are used for fp16/bf16 CUDA tensors when
``flash_attn`` is importable, unless ``SPARSE_ATTN_BACKEND=sdpa``.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F

from extensions.sparse.tensor import SparseTensor

_BACKEND_ENV = "SPARSE_ATTN_BACKEND"
_BACKEND_CHOICES = ("auto", "sdpa", "flash_attn")
# Windows are attended in padded batches of at most this many tokens, to bound memory.
_WINDOW_CHUNK_TOKENS = 16384


@functools.cache
def _flash_attn_module() -> ModuleType | None:
    try:
        import flash_attn
    except ImportError:
        return None
    return flash_attn


def _flash_attn_for(tensor: torch.Tensor) -> ModuleType | None:
    """The flash_attn module when it should run on ``tensor``, else None."""
    choice = os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in _BACKEND_CHOICES:
        raise ValueError(
            f"{_BACKEND_ENV}={choice!r} is not supported; use one of {', '.join(_BACKEND_CHOICES)}"
        )
    if choice == "sdpa" or not tensor.is_cuda or tensor.dtype not in (torch.float16, torch.bfloat16):
        return None
    return _flash_attn_module()


def _cumulative(lengths: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor([0, *lengths], device=device).cumsum(0).to(torch.int32)


# ----------------------------------------------------------------------------------- full attention
@dataclass(frozen=True)
class _Ragged:
    """Sequences stored back to back: ``values [T, ..., H, D]`` and the length of each batch element."""

    values: torch.Tensor
    lengths: list[int]


def _ragged(x: SparseTensor | torch.Tensor, name: str, fused: int | None) -> _Ragged:
    """A sparse ``[N, (fused,) H, D]`` or dense ``[B, L, (fused,) H, D]`` operand as a ragged batch."""
    per_row = 2 if fused is None else 3
    if isinstance(x, SparseTensor):
        values, lengths = x.feats, [s.stop - s.start for s in x.layout]
    elif isinstance(x, torch.Tensor) and x.dim() == per_row + 2:
        values, lengths = x.reshape(-1, *x.shape[2:]), [x.shape[1]] * x.shape[0]
    else:
        raise ValueError(
            f"{name} must be a SparseTensor or a dense [B, L, ...] tensor, got {type(x).__name__}"
        )
    if values.dim() != per_row + 1 or (fused is not None and values.shape[1] != fused):
        layout = "[N, H, D]" if fused is None else f"[N, {fused}, H, D]"
        raise ValueError(f"{name} must hold features {layout}, got {tuple(values.shape)}")
    return _Ragged(values, lengths)


def _varlen_attention(q: _Ragged, k: _Ragged, v: _Ragged) -> torch.Tensor:
    """Attention of each query sequence over the key/value sequence of the same batch element."""
    if not len(q.lengths) == len(k.lengths) == len(v.lengths):
        raise ValueError(f"batch sizes differ: q {len(q.lengths)}, k {len(k.lengths)}, v {len(v.lengths)}")
    if k.lengths != v.lengths:
        raise ValueError("k and v must have the same sequence lengths")
    flash = _flash_attn_for(q.values)
    if flash is not None:
        return flash.flash_attn_varlen_func(
            q.values,
            k.values,
            v.values,
            _cumulative(q.lengths, q.values.device),
            _cumulative(k.lengths, q.values.device),
            max(q.lengths),
            max(k.lengths),
        )
    outputs, q_start, kv_start = [], 0, 0
    for q_len, kv_len in zip(q.lengths, k.lengths, strict=True):
        heads_first = [
            t.values[start : start + length].transpose(0, 1).unsqueeze(0)
            for t, start, length in ((q, q_start, q_len), (k, kv_start, kv_len), (v, kv_start, kv_len))
        ]
        outputs.append(F.scaled_dot_product_attention(*heads_first)[0].transpose(0, 1))
        q_start, kv_start = q_start + q_len, kv_start + kv_len
    return torch.cat(outputs)


def sparse_scaled_dot_product_attention(
    *args: SparseTensor | torch.Tensor, **kwargs: SparseTensor | torch.Tensor
):
    """Full attention per batch element, with TRELLIS's call forms:

    * ``(qkv)``: sparse ``[N, 3, H, D]`` self-attention;
    * ``(q, kv)``: ``q`` sparse ``[N, H, D]`` or dense ``[B, L, H, D]``; ``kv`` sparse ``[N, 2, H, D]`` or dense
      ``[B, L, 2, H, D]`` (at least one of them sparse);
    * ``(q, k, v)``: the same with separate ``k`` and ``v`` (``[N, H, D]`` / ``[B, L, H, D]``).

    Returns a ``SparseTensor`` ``[N, H, Dv]`` on ``q``'s voxels when ``q`` is sparse, else ``[B, L, H, Dv]``.
    """
    names = {1: ("qkv",), 2: ("q", "kv"), 3: ("q", "k", "v")}.get(len(args) + len(kwargs))
    if names is None:
        raise ValueError(f"expected (qkv), (q, kv) or (q, k, v); got {len(args) + len(kwargs)} arguments")
    operands = dict(zip(names, args, strict=False)) | kwargs
    if set(operands) != set(names):
        raise ValueError(f"expected arguments {names}, got {tuple(operands)}")
    if not any(isinstance(x, SparseTensor) for x in operands.values()):
        raise ValueError("at least one operand must be a SparseTensor")

    if "qkv" in operands:
        qkv = _ragged(operands["qkv"], "qkv", fused=3)
        q, k, v = (_Ragged(t, qkv.lengths) for t in qkv.values.unbind(1))
    elif "kv" in operands:
        q = _ragged(operands["q"], "q", fused=None)
        kv = _ragged(operands["kv"], "kv", fused=2)
        k, v = (_Ragged(t, kv.lengths) for t in kv.values.unbind(1))
    else:
        q, k, v = (_ragged(operands[name], name, fused=None) for name in names)

    out = _varlen_attention(q, k, v)
    query = operands.get("q", operands.get("qkv"))
    if isinstance(query, SparseTensor):
        return query.replace(out)
    return out.reshape(query.shape[0], query.shape[1], *out.shape[1:])


# ------------------------------------------------------------------------------- windowed attention
@dataclass(frozen=True)
class WindowChunk:
    """Consecutive windows attended as one padded batch ``[windows, padded, ...]``.

    ``sources`` gives the input row of every padded slot (padding repeats a row of the same window: such
    keys are masked out and such queries dropped); output row ``rows[i]`` is slot ``(window[i], position[i])``.
    """

    windows: int
    padded: int
    sources: torch.Tensor
    rows: torch.Tensor
    window: torch.Tensor
    position: torch.Tensor
    key_mask: torch.Tensor | None  # [windows, 1, 1, padded], None when no window is padded


@dataclass(frozen=True)
class WindowPartition:
    """Rows grouped by window: ``order`` lists the rows window by window, from the longest window to the
    shortest, ``lengths`` the window lengths in that order, and ``chunks`` the padded batches."""

    order: torch.Tensor
    lengths: list[int]
    chunks: list[WindowChunk]


def _as_triple(value: int | tuple[int, ...] | list[int], name: str) -> tuple[int, int, int]:
    values = tuple(value) if isinstance(value, tuple | list) else (value,) * 3
    if len(values) != 3:
        raise ValueError(f"{name} must be an int or three ints, got {value}")
    return tuple(int(v) for v in values)


def _chunk_bounds(lengths: list[int]) -> list[tuple[int, int]]:
    """Window ranges ``[first, last)`` of chunks: windows no shorter than 3/4 of the chunk's longest, and at
    most ``_WINDOW_CHUNK_TOKENS`` padded tokens (``lengths`` are sorted from longest to shortest)."""
    bounds, first = [], 0
    while first < len(lengths):
        padded, last = lengths[first], first + 1
        while (
            last < len(lengths)
            and (last - first + 1) * padded <= _WINDOW_CHUNK_TOKENS
            and 4 * lengths[last] >= 3 * padded
        ):
            last += 1
        bounds.append((first, last))
        first = last
    return bounds


def window_partition(
    coords: torch.Tensor, window_size: tuple[int, int, int], shift: tuple[int, int, int]
) -> WindowPartition:
    """Windows as in TRELLIS: window of a voxel = ``(batch, (xyz + shift) // window_size)``."""
    device = coords.device
    cells = coords.long()
    cells[:, 1:] = torch.div(
        cells[:, 1:] + torch.tensor(shift, device=device),
        torch.tensor(window_size, device=device),
        rounding_mode="floor",
    )
    size_x, size_y, size_z = (cells[:, 1:].amax(0) + 1).tolist()
    window = ((cells[:, 0] * size_x + cells[:, 1]) * size_y + cells[:, 2]) * size_z + cells[:, 3]
    by_window = torch.argsort(window, stable=True)
    lengths = torch.unique_consecutive(window[by_window], return_counts=True)[1]

    # Re-order the windows from longest to shortest so that chunks pad little.
    rank = torch.argsort(lengths, descending=True, stable=True)
    ranked = lengths[rank]
    ranked_starts = ranked.cumsum(0) - ranked
    position = torch.arange(coords.shape[0], device=device) - torch.repeat_interleave(ranked_starts, ranked)
    order = by_window[torch.repeat_interleave((lengths.cumsum(0) - lengths)[rank], ranked) + position]

    sizes = ranked.tolist()
    row_starts = list(itertools.accumulate(sizes, initial=0))
    chunks = []
    for first, last in _chunk_bounds(sizes):
        padded, windows = sizes[first], last - first
        row_range = slice(row_starts[first], row_starts[last])
        local_window = torch.repeat_interleave(torch.arange(windows, device=device), ranked[first:last])
        slots = local_window * padded + position[row_range]
        sources = torch.repeat_interleave(order[ranked_starts[first:last]], padded)
        sources[slots] = order[row_range]
        key_mask = None
        if sizes[last - 1] != padded:
            key_mask = torch.arange(padded, device=device) < ranked[first:last, None]
            key_mask = key_mask[:, None, None, :]
        chunks.append(
            WindowChunk(
                windows, padded, sources, order[row_range], local_window, position[row_range], key_mask
            )
        )
    return WindowPartition(order, sizes, chunks)


def _padded_window_attention(qkv: torch.Tensor, partition: WindowPartition) -> torch.Tensor:
    """SDPA within windows of ``qkv [N, 3, H, D]``, one padded batch per chunk; returns ``[N, H, D]``."""
    out = qkv.new_empty(qkv.shape[0], *qkv.shape[2:])
    for chunk in partition.chunks:
        batched = qkv.index_select(0, chunk.sources).view(chunk.windows, chunk.padded, *qkv.shape[1:])
        q, k, v = batched.permute(2, 0, 3, 1, 4).unbind(0)  # each [windows, H, padded, D]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=chunk.key_mask)
        out.index_copy_(0, chunk.rows, attended[chunk.window, :, chunk.position])
    return out


def sparse_windowed_scaled_dot_product_self_attention(
    qkv: SparseTensor,
    window_size: int | tuple[int, int, int],
    shift_window: int | tuple[int, int, int] = (0, 0, 0),
) -> SparseTensor:
    """Self-attention within cubic windows of ``qkv [N, 3, H, D]``; returns ``[N, H, D]`` on the same voxels.

    The partition (TRELLIS's ``calc_window_partition``) is cached on the tensor per window size and shift.
    """
    if not isinstance(qkv, SparseTensor) or qkv.feats.dim() != 4 or qkv.feats.shape[1] != 3:
        raise ValueError("qkv must be a SparseTensor with features [N, 3, H, D]")
    size, shift = _as_triple(window_size, "window_size"), _as_triple(shift_window, "shift_window")
    if min(size) < 1 or min(shift) < 0:
        raise ValueError(
            f"window_size must be >= 1 and shift_window >= 0, got {window_size} and {shift_window}"
        )
    partition = qkv.cached_for_coords(
        f"window_partition_{size}_{shift}", lambda: window_partition(qkv.coords, size, shift)
    )
    flash = _flash_attn_for(qkv.feats)
    if flash is None:
        return qkv.replace(_padded_window_attention(qkv.feats, partition))
    cumulative = _cumulative(partition.lengths, qkv.device)
    grouped = flash.flash_attn_varlen_qkvpacked_func(
        qkv.feats[partition.order], cumulative, max(partition.lengths)
    )
    return qkv.replace(torch.empty_like(grouped).index_copy_(0, partition.order, grouped))
