"""MVDream's multi-view self-attention as a diffusers attention processor.

MVDream changes SD2.1's self-attention (``attn1`` of every transformer block) so that queries, keys and values
span all F views of one object: tokens [B * F, L, C] are regrouped to [B, F * L, C] (views of one object are
consecutive in the batch), attended jointly, and split back. Cross-attention (``attn2``) and the feed-forward
layers stay per view. The processor reuses the layer's own projections, so SD2.1-layout weights load as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from predictors.diffusion import set_self_attention_processor


class MultiViewAttnProcessor:
    """Joint self-attention over the ``num_views`` consecutive views of each object in the batch.

    One instance is shared by every ``attn1`` layer; set ``num_views`` before a forward pass.
    """

    def __init__(self, num_views: int = 1) -> None:
        self.num_views = num_views

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("MultiViewAttnProcessor is for self-attention without a mask (attn1 layers)")
        batch_views, tokens, channels = hidden_states.shape
        views = self.num_views
        if batch_views % views:
            raise ValueError(f"batch of {batch_views} images is not a whole number of {views}-view objects")
        objects = batch_views // views
        grouped = hidden_states.reshape(objects, views * tokens, channels)
        heads = attn.heads

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(objects, views * tokens, heads, -1).transpose(1, 2)

        query, key, value = (split_heads(layer(grouped)) for layer in (attn.to_q, attn.to_k, attn.to_v))
        joint = F.scaled_dot_product_attention(query, key, value)
        joint = joint.transpose(1, 2).reshape(objects, views * tokens, -1)
        out = attn.to_out[1](attn.to_out[0](joint))
        return out.reshape(batch_views, tokens, -1)


def install_multiview_attention(unet: torch.nn.Module) -> MultiViewAttnProcessor:
    """Put one shared ``MultiViewAttnProcessor`` on every ``attn1`` layer; other layers keep theirs."""
    processor = MultiViewAttnProcessor()
    set_self_attention_processor(unet, processor)
    return processor
