"""SyncMVD self-attention (predictors.diffusion.attention) against a per-view loop oracle and a real diffusers
Attention layer; perturbing a view must change exactly the views that attend to it."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from predictors.diffusion.attention import MultiViewSelfAttention, neighbour_views, reference_view

AZIMUTHS = [-180, -135, -90, -45, 0, 45, 90, 135, 0, 180]
ELEVATIONS = [0] * 8 + [30, 30]


def test_default_rig_neighbours_and_reference():
    neighbours = neighbour_views(AZIMUTHS, ELEVATIONS)
    assert neighbours[4] == [3, 4, 5]  # front: -45, 0, 45
    assert neighbours[0] == [0, 1, 7]  # back: wraps around the ring
    assert neighbours[8] == [4, 8] and neighbours[9] == [0, 9]  # top views: front / back
    assert reference_view(AZIMUTHS, ELEVATIONS) == 4


def layer() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


def oracle(attn: Attention, hidden: torch.Tensor, neighbours, reference, weight: float) -> torch.Tensor:
    """Plain softmax attention per (copy, view), written out with explicit loops."""
    views = len(neighbours)
    copies = hidden.shape[0] // views
    out = torch.empty(hidden.shape[0], hidden.shape[1], 16)
    q, k, v = attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)

    def heads(x):
        return x.reshape(x.shape[0], 2, 8).transpose(0, 1)

    def attend(row, others):
        keys = torch.cat([heads(k[c]) for c in others], dim=1)
        values = torch.cat([heads(v[c]) for c in others], dim=1)
        weights = torch.softmax(heads(q[row]) @ keys.transpose(1, 2) / 8**0.5, dim=-1)
        return (weights @ values).transpose(0, 1).reshape(-1, 16)

    for copy in range(copies):
        for view in range(views):
            row = copy * views + view
            result = attend(row, [copy * views + n for n in neighbours[view]])
            if weight > 0:
                reference_out = attend(row, [copy * views + r for r in reference])
                result = (result + weight * reference_out) / (1 + weight)
            out[row] = result
    return attn.to_out[0](out)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_matches_the_loop_oracle(weight):
    attn = layer()
    neighbours = neighbour_views(AZIMUTHS, ELEVATIONS)
    processor = MultiViewSelfAttention(neighbours, [4])
    processor.reference_weight = weight
    attn.set_processor(processor)
    hidden = torch.randn(20, 6, 16, generator=torch.Generator().manual_seed(1))  # 2 CFG copies x 10 views
    with torch.no_grad():
        torch.testing.assert_close(attn(hidden), oracle(attn, hidden, neighbours, [4], weight))


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_a_view_only_influences_the_views_that_attend_to_it(weight):
    attn = layer()
    neighbours = neighbour_views(AZIMUTHS, ELEVATIONS)
    processor = MultiViewSelfAttention(neighbours, [4])
    processor.reference_weight = weight
    attn.set_processor(processor)
    hidden = torch.randn(20, 6, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = attn(hidden)
        for source in range(10):
            changed = hidden.clone()
            changed[source] += 1.0  # first copy only
            moved = (attn(changed) - base).abs().amax(dim=(1, 2)) > 1e-6
            expected = [source in neighbours[view] or (weight > 0 and source == 4) for view in range(10)]
            assert moved[:10].tolist() == expected, source
            assert not moved[10:].any()  # the other CFG copy is untouched
