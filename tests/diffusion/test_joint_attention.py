"""The multi-view attention processor in MVDream's joint mode against a direct computation of MVDream's attention
(tiny UNet, CPU)."""

import copy

import pytest
import torch

from predictors.diffusion.attention import MultiViewSelfAttention, self_attention_names
from predictors.text_to_multiview.unet import MVDREAM_UNET_CONFIG, MultiViewUNet, build_unet
from testing.tiny.mvdream import TINY_CONTEXT_DIM, TINY_UNET_CONFIG

OBJECTS, VIEWS, TOKENS = 2, 4, 7


def _random_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    unet = build_unet(TINY_UNET_CONFIG).double().eval()
    with torch.no_grad():  # live everywhere, zero-initialised layers included
        for parameter in unet.parameters():
            parameter.normal_(0.0, 0.15)
    return unet


def _inputs(objects: int = OBJECTS, views: int = VIEWS):
    generator = torch.Generator().manual_seed(1)
    batch = objects * views
    return (
        torch.randn(batch, 4, 8, 8, generator=generator, dtype=torch.float64),
        torch.tensor(501),
        torch.randn(batch, TOKENS, TINY_CONTEXT_DIM, generator=generator, dtype=torch.float64),
        torch.randn(batch, 16, generator=generator, dtype=torch.float64),
    )


def _attention(attn: torch.nn.Module, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head with the layer's weights, for one sequence [L, C]."""
    heads = attn.heads
    q = (queries @ attn.to_q.weight.T).reshape(queries.shape[0], heads, -1).transpose(0, 1)
    k = (keys @ attn.to_k.weight.T).reshape(keys.shape[0], heads, -1).transpose(0, 1)
    v = (keys @ attn.to_v.weight.T).reshape(keys.shape[0], heads, -1).transpose(0, 1)
    weights = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
    mixed = (weights @ v).transpose(0, 1).reshape(queries.shape[0], -1)
    return mixed @ attn.to_out[0].weight.T + attn.to_out[0].bias


def test_attn1_attends_jointly_over_each_objects_views_and_attn2_per_view():
    model = MultiViewUNet(_random_unet())
    records = []

    def record(module, args, kwargs, output):
        records.append((module, args[0], kwargs.get("encoder_hidden_states"), output))

    hooks = [
        module.register_forward_hook(record, with_kwargs=True)
        for name, module in model.unet.named_modules()
        if name.endswith(("attn1", "attn2"))
    ]
    latents, timestep, context, cameras = _inputs()
    with torch.no_grad():
        model(latents, timestep, context, cameras, num_views=VIEWS)
    for hook in hooks:
        hook.remove()
    joint = per_view = 0
    for module, hidden, encoder_states, output in records:
        batch, tokens, channels = hidden.shape
        if encoder_states is None:  # attn1: one sequence of VIEWS * tokens per object
            grouped = hidden.reshape(OBJECTS, VIEWS * tokens, channels)
            expected = torch.stack([_attention(module, sequence, sequence) for sequence in grouped])
            expected = expected.reshape(batch, tokens, -1)
            joint += 1
        else:  # attn2: each view attends to its own text context
            expected = torch.stack(
                [_attention(module, h, c) for h, c in zip(hidden, encoder_states, strict=True)]
            )
            per_view += 1
        torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)
    assert joint == per_view == len(self_attention_names(model.unet)) == 4  # down 1, mid 1, up 2


def test_one_view_equals_plain_self_attention_and_four_views_do_not():
    plain = _random_unet()
    model = MultiViewUNet(copy.deepcopy(plain))
    latents, timestep, context, cameras = _inputs()
    with torch.no_grad():
        reference = plain(latents, timestep, encoder_hidden_states=context, class_labels=cameras).sample
        single = model(latents, timestep, context, cameras, num_views=1)
        joint = model(latents, timestep, context, cameras, num_views=VIEWS)
    torch.testing.assert_close(single, reference, rtol=1e-10, atol=1e-10)
    assert (joint - reference).abs().max() > 1e-3 * reference.abs().max()


def test_views_interact_only_within_their_object():
    model = MultiViewUNet(_random_unet())
    latents, timestep, context, cameras = _inputs()
    changed = latents.clone()
    changed[1] += 1.0  # view 1 of object 0
    order = torch.cat([torch.arange(VIEWS, 2 * VIEWS), torch.arange(VIEWS)])  # swap the two objects
    with torch.no_grad():
        base = model(latents, timestep, context, cameras, num_views=VIEWS)
        after = model(changed, timestep, context, cameras, num_views=VIEWS)
        swapped = model(latents[order], timestep, context[order], cameras[order], num_views=VIEWS)
    difference = (after - base).abs().flatten(1).amax(dim=1)
    assert (difference[[0, 2, 3]] > 1e-6).all()  # the object's other views see the change
    assert (difference[VIEWS:] == 0).all()  # the other object does not
    torch.testing.assert_close(swapped, base[order], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="whole number"):
        model(latents[:6], timestep, context[:6], cameras[:6], num_views=VIEWS)


def test_processor_sits_on_every_self_attention_of_the_full_size_unet_and_only_there():
    with torch.device("meta"):
        model = MultiViewUNet(build_unet(MVDREAM_UNET_CONFIG))
    processors = model.unet.attn_processors
    self_attention = self_attention_names(model.unet)
    assert len(processors) == 32 and len(self_attention) == 16
    for name, processor in processors.items():
        assert isinstance(processor, MultiViewSelfAttention) == (name in self_attention)
    assert sum(p.numel() for p in model.parameters()) == 867_572_164  # MVDream's MultiViewUNetModel
