"""Neighbour maps for submanifold convolution: which input voxel feeds which output voxel, per kernel offset.

Kernel offset ``k`` of a ``ks``-sized kernel is ``(i, j, l)`` with ``k = (i * ks + j) * ks + l``; it reads the
input voxel at ``(x, y, z) + ((i, j, l) - ks // 2) * dilation`` for the output voxel at ``(x, y, z)``
(cross-correlation, as spconv's ``SubMConv3d`` and ``F.conv3d``). Output voxels are the input voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KernelMap:
    """Row pairs per kernel offset. ``pairs`` holds ``(offset, input_rows, output_rows)`` for every offset
    other than the centre that has at least one pair; the centre offset pairs every row with itself."""

    kernel_size: int
    dilation: int
    pairs: list[tuple[int, torch.Tensor, torch.Tensor]]

    @property
    def center(self) -> int:
        return self.kernel_size**3 // 2


def kernel_offsets(kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """``[ks**3, 3]`` int64 voxel offsets in kernel-index order (see the module docstring)."""
    steps = (torch.arange(kernel_size) - kernel_size // 2) * dilation
    return torch.cartesian_prod(steps, steps, steps).reshape(-1, 3)


def build_kernel_map(coords: torch.Tensor, kernel_size: int, dilation: int = 1) -> KernelMap:
    """Neighbour pairs of the voxels ``coords [N, 4]`` for an odd ``kernel_size``.

    Voxels are packed into sortable int64 keys, sorted once, and each offset is looked up with
    ``searchsorted``. Offset ``k`` and its mirror ``ks**3 - 1 - k`` have the same pairs with the roles
    swapped, so only half of the offsets are searched.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"submanifold kernels must have an odd size >= 1, got {kernel_size}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    volume = kernel_size**3
    rows = coords.shape[0]
    if kernel_size == 1 or rows == 0:
        return KernelMap(kernel_size, dilation, [])
    reach = (kernel_size // 2) * dilation
    voxels = coords.long()
    if bool((voxels[:, 1:] < 0).any()):
        raise ValueError("voxel coordinates must be non-negative")
    # Padding by `reach` on both sides keeps every neighbour's key inside its own row of the packing.
    span = int(voxels[:, 1:].max()) + 2 * reach + 1
    strides = torch.tensor([span * span, span, 1], device=coords.device)
    keys = voxels[:, 0] * span**3 + ((voxels[:, 1:] + reach) * strides).sum(1)
    sorted_keys, order = torch.sort(keys)
    if rows > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        raise ValueError("coords hold the same voxel more than once")
    deltas = (kernel_offsets(kernel_size, dilation).to(coords.device) * strides).sum(1)

    found_pairs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for offset in range(volume // 2):
        wanted = keys + deltas[offset]
        position = torch.searchsorted(sorted_keys, wanted).clamp_(max=rows - 1)
        output_rows = torch.nonzero(sorted_keys[position] == wanted).squeeze(1)
        if output_rows.numel():
            input_rows = order[position[output_rows]]
            found_pairs[offset] = (input_rows, output_rows)
            found_pairs[volume - 1 - offset] = (output_rows, input_rows)
    pairs = [(offset, *found_pairs[offset]) for offset in sorted(found_pairs)]
    return KernelMap(kernel_size, dilation, pairs)
