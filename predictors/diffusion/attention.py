"""Multi-view self-attention as one diffusers attention processor, for SyncMVD (texture) and MVDream.

Every ``attn1`` (self-attention) layer is replaced: the queries of view b attend to the keys and values of
its neighbour views (tokens of the listed views concatenated), and, while ``reference_weight`` > 0, also
to those of the reference (front) views; ``h = (h_neighbours + w * h_reference) / (1 + w)``. The batch holds
``copies`` consecutive groups of the N views (e.g. the negative and positive CFG halves), and a view only
attends to views of its own group. Cross-attention layers keep their processors (IP-Adapter works).

MVDream's joint attention is the case where every view neighbours every other and there is no reference
(:meth:`MultiViewSelfAttention.joint`): then the N views' tokens form one sequence per group and run as a single
attention call, as in MVDream. The processor reuses each layer's own projections, so official weights load as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

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

    def __init__(self, neighbours: Sequence[Sequence[int]], reference: Sequence[int] = ()) -> None:
        count = len(neighbours)
        if any(not views or min(views) < 0 or max(views) >= count for views in neighbours):
            raise ValueError(f"every view needs neighbour indices in [0, {count}), got {neighbours}")
        if reference and (min(reference) < 0 or max(reference) >= count):
            raise ValueError(f"reference views must be indices in [0, {count}), got {reference}")
        self.neighbours = [list(views) for views in neighbours]
        self.reference = list(reference)
        self.reference_weight = 0.0

    @classmethod
    def joint(cls, num_views: int) -> MultiViewSelfAttention:
        """MVDream's attention: every view of a group attends to all views of that group."""
        return cls([list(range(num_views))] * num_views)

    def set_joint(self, num_views: int) -> None:
        """Switch to joint attention over ``num_views`` views (MVDream's batches may change the count)."""
        self.neighbours = [list(range(num_views))] * num_views
        self.reference = []

    @property
    def num_views(self) -> int:
        return len(self.neighbours)

    @property
    def is_joint(self) -> bool:
        everything = list(range(self.num_views))
        return not self.reference and all(views == everything for views in self.neighbours)

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
        total = hidden_states.shape[0]
        views = self.num_views
        if total % views:
            raise ValueError(f"batch of {total} is not a whole number of {views}-view groups")
        copies = total // views
        if self.is_joint:
            merged = self._joint(attn, hidden_states, copies)
        else:
            merged = self._neighbours(attn, hidden_states, copies)
        merged = attn.to_out[1](attn.to_out[0](merged))
        if spatial:
            merged = merged.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            merged = merged + residual
        return merged / attn.rescale_output_factor

    def _joint(self, attn: torch.nn.Module, hidden_states: torch.Tensor, copies: int) -> torch.Tensor:
        """[copies * views, L, C] tokens attended as one sequence of views * L tokens per copy."""
        total, tokens, channels = hidden_states.shape
        grouped = hidden_states.reshape(copies, self.num_views * tokens, channels)

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(copies, self.num_views * tokens, attn.heads, -1).transpose(1, 2)

        query, key, value = (split_heads(layer(grouped)) for layer in (attn.to_q, attn.to_k, attn.to_v))
        joint = F.scaled_dot_product_attention(query, key, value)
        return joint.transpose(1, 2).reshape(total, tokens, -1)

    def _neighbours(self, attn: torch.nn.Module, hidden_states: torch.Tensor, copies: int) -> torch.Tensor:
        """Each view's queries against its neighbours' (and the reference views') keys and values."""
        total, tokens, _ = hidden_states.shape
        views, heads = self.num_views, attn.heads

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
        return merged.permute(0, 1, 3, 2, 4).reshape(total, tokens, -1).to(query.dtype)

    @staticmethod
    def _attend(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, views: list[int]
    ) -> torch.Tensor:
        """query [copies, heads, L, d] against the tokens of ``views`` of the same copy."""
        keys = torch.cat([key[:, view] for view in views], dim=2)
        values = torch.cat([value[:, view] for view in views], dim=2)
        return F.scaled_dot_product_attention(query, keys, values)


def self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Processor names of the UNet's self-attention layers (``...attn1.processor``)."""
    return [name for name in unet.attn_processors if name.endswith("attn1.processor")]


def install_multiview_attention(
    unet: torch.nn.Module, processor: MultiViewSelfAttention
) -> MultiViewSelfAttention:
    """Put one shared ``processor`` on every ``attn1`` layer of ``unet``; other layers keep theirs."""
    processors = dict(unet.attn_processors)
    for name in self_attention_names(unet):
        processors[name] = processor
    unet.set_attn_processor(processors)
    return processor
