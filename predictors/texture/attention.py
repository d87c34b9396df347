"""SyncMVD's multi-view self-attention as a diffusers attention processor.

Every ``attn1`` (self-attention) layer is replaced: the queries of view b attend to the keys and values of
its neighbour views (tokens of the listed views concatenated), and, while ``reference_weight`` > 0, also
to those of the reference (front) views; ``h = (h_neighbours + w * h_reference) / (1 + w)``. The batch holds
``copies`` consecutive groups of the N views (e.g. the negative and positive CFG halves), and a view only
attends to views of its own group. Cross-attention layers keep their processors (IP-Adapter works).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from predictors.diffusion import set_self_attention_processor

RING_ELEVATION_LIMIT = 1e-6  # views at elevation 0 form the ring


def neighbour_views(azimuths: Sequence[float], elevations: Sequence[float]) -> list[list[int]]:
    """SyncMVD's neighbours: a ring view (elevation 0) sees itself and the ring views on either side by
    azimuth; any other view sees the ring view nearest in azimuth and itself."""
    ring = sorted(
        (index for index, elevation in enumerate(elevations) if abs(elevation) < RING_ELEVATION_LIMIT),
        key=lambda index: azimuths[index] % 360.0,
    )
    neighbours: list[list[int]] = []
    for index in range(len(azimuths)):
        if index in ring:
            position = ring.index(index)
            around = [ring[(position + offset) % len(ring)] for offset in (-1, 0, 1)]
            neighbours.append(sorted(set(around)))
        elif ring:
            nearest = min(ring, key=lambda other: _angle(azimuths[other], azimuths[index]))
            neighbours.append(sorted({nearest, index}))
        else:
            neighbours.append([index])
    return neighbours


def reference_view(azimuths: Sequence[float], elevations: Sequence[float]) -> int:
    """The front view: the lowest view whose azimuth is closest to 0."""
    return min(range(len(azimuths)), key=lambda index: (_angle(azimuths[index], 0.0), abs(elevations[index])))


def _angle(a: float, b: float) -> float:
    difference = abs(a - b) % 360.0
    return min(difference, 360.0 - difference)


class MultiViewSelfAttention:
    """Neighbour + reference self-attention over ``num_views`` views; one instance serves every attn1 layer.

    Set ``reference_weight`` per step (SyncMVD: 1 while t > 800, then 0; at 0 the reference term is skipped).
    """

    def __init__(self, neighbours: Sequence[Sequence[int]], reference: Sequence[int]) -> None:
        count = len(neighbours)
        if any(not views or min(views) < 0 or max(views) >= count for views in neighbours):
            raise ValueError(f"every view needs neighbour indices in [0, {count}), got {neighbours}")
        if not reference or min(reference) < 0 or max(reference) >= count:
            raise ValueError(f"reference views must be indices in [0, {count}), got {reference}")
        self.neighbours = [list(views) for views in neighbours]
        self.reference = list(reference)
        self.reference_weight = 0.0

    @property
    def num_views(self) -> int:
        return len(self.neighbours)

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("MultiViewSelfAttention is for self-attention without a mask (attn1 layers)")
        residual = hidden_states
        spatial = hidden_states.ndim == 4
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.reshape(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        total, tokens, _ = hidden_states.shape
        views = self.num_views
        if total % views:
            raise ValueError(f"batch of {total} is not a whole number of {views}-view groups")
        copies = total // views
        heads = attn.heads

        def grouped(layer: torch.nn.Module) -> torch.Tensor:  # [copies, views, heads, tokens, d]
            projected = layer(hidden_states)
            return projected.reshape(copies, views, tokens, heads, -1).permute(0, 1, 3, 2, 4)

        query, key, value = grouped(attn.to_q), grouped(attn.to_k), grouped(attn.to_v)
        outputs = []
        for view in range(views):
            out = self._attend(query[:, view], key, value, self.neighbours[view])
            if self.reference_weight > 0:
                reference = self._attend(query[:, view], key, value, self.reference)
                out = (out + self.reference_weight * reference) / (1.0 + self.reference_weight)
            outputs.append(out)
        merged = torch.stack(outputs, dim=1)  # [copies, views, heads, tokens, d]
        merged = merged.permute(0, 1, 3, 2, 4).reshape(total, tokens, -1).to(query.dtype)
        merged = attn.to_out[1](attn.to_out[0](merged))
        if spatial:
            merged = merged.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            merged = merged + residual
        return merged / attn.rescale_output_factor

    @staticmethod
    def _attend(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, views: list[int]
    ) -> torch.Tensor:
        """query [copies, heads, L, d] against the tokens of ``views`` of the same copy."""
        keys = torch.cat([key[:, view] for view in views], dim=2)
        values = torch.cat([value[:, view] for view in views], dim=2)
        return F.scaled_dot_product_attention(query, keys, values)


def install_multiview_attention(
    unet: torch.nn.Module, neighbours: Sequence[Sequence[int]], reference: Sequence[int]
) -> MultiViewSelfAttention:
    """Put one shared processor on every ``attn1`` layer of ``unet``; other layers keep theirs."""
    processor = MultiViewSelfAttention(neighbours, reference)
    set_self_attention_processor(unet, processor)
    return processor
