"""The MVDream checkpoint converter on LDM-layout state dicts written here with the original key names.

``ldm_unet_shapes`` writes the key names and shapes of LDM's ``MultiViewUNetModel`` from its definition
(openaimodel.py: ResBlock, SpatialTransformer3D with linear projections, Downsample ``op``, Upsample ``conv``,
``time_embed``, ``camera_embed``, ``out``), independently of diffusers' key mapping.
"""

import json

import pytest
import torch

from predictors.text_to_multiview.convert import UNET_PREFIX, convert_file, convert_unet
from predictors.text_to_multiview.unet import MVDREAM_UNET_CONFIG


def _resblock(prefix: str, cin: int, cout: int, emb: int) -> dict[str, tuple]:
    shapes = {
        f"{prefix}.in_layers.0.weight": (cin,),
        f"{prefix}.in_layers.0.bias": (cin,),
        f"{prefix}.in_layers.2.weight": (cout, cin, 3, 3),
        f"{prefix}.in_layers.2.bias": (cout,),
        f"{prefix}.emb_layers.1.weight": (cout, emb),
        f"{prefix}.emb_layers.1.bias": (cout,),
        f"{prefix}.out_layers.0.weight": (cout,),
        f"{prefix}.out_layers.0.bias": (cout,),
        f"{prefix}.out_layers.3.weight": (cout, cout, 3, 3),
        f"{prefix}.out_layers.3.bias": (cout,),
    }
    if cin != cout:
        shapes[f"{prefix}.skip_connection.weight"] = (cout, cin, 1, 1)
        shapes[f"{prefix}.skip_connection.bias"] = (cout,)
    return shapes


def _transformer(prefix: str, channels: int, context: int) -> dict[str, tuple]:
    block = f"{prefix}.transformer_blocks.0"
    shapes = {
        f"{prefix}.norm.weight": (channels,),
        f"{prefix}.norm.bias": (channels,),
        f"{prefix}.proj_in.weight": (channels, channels),
        f"{prefix}.proj_in.bias": (channels,),
        f"{prefix}.proj_out.weight": (channels, channels),
        f"{prefix}.proj_out.bias": (channels,),
        f"{block}.ff.net.0.proj.weight": (8 * channels, channels),
        f"{block}.ff.net.0.proj.bias": (8 * channels,),
        f"{block}.ff.net.2.weight": (channels, 4 * channels),
        f"{block}.ff.net.2.bias": (channels,),
    }
    for attn, source in (("attn1", channels), ("attn2", context)):
        shapes[f"{block}.{attn}.to_q.weight"] = (channels, channels)
        shapes[f"{block}.{attn}.to_k.weight"] = (channels, source)
        shapes[f"{block}.{attn}.to_v.weight"] = (channels, source)
        shapes[f"{block}.{attn}.to_out.0.weight"] = (channels, channels)
        shapes[f"{block}.{attn}.to_out.0.bias"] = (channels,)
    for norm in ("norm1", "norm2", "norm3"):
        shapes[f"{block}.{norm}.weight"] = (channels,)
        shapes[f"{block}.{norm}.bias"] = (channels,)
    return shapes


def ldm_unet_shapes(
    model_channels: int,
    channel_mult: list[int],
    num_res_blocks: int,
    attention_levels: set[int],
    context: int,
) -> dict[str, tuple]:
    """Key -> shape of MVDream's UNet (without the ``model.diffusion_model.`` prefix)."""
    emb = 4 * model_channels
    shapes = {
        "time_embed.0.weight": (emb, model_channels),
        "time_embed.0.bias": (emb,),
        "time_embed.2.weight": (emb, emb),
        "time_embed.2.bias": (emb,),
        "camera_embed.0.weight": (emb, 16),
        "camera_embed.0.bias": (emb,),
        "camera_embed.2.weight": (emb, emb),
        "camera_embed.2.bias": (emb,),
        "input_blocks.0.0.weight": (model_channels, 4, 3, 3),
        "input_blocks.0.0.bias": (model_channels,),
    }
    channels, skips, block = model_channels, [model_channels], 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            shapes.update(_resblock(f"input_blocks.{block}.0", channels, mult * model_channels, emb))
            channels = mult * model_channels
            if level in attention_levels:
                shapes.update(_transformer(f"input_blocks.{block}.1", channels, context))
            skips.append(channels)
            block += 1
        if level != len(channel_mult) - 1:
            shapes[f"input_blocks.{block}.0.op.weight"] = (channels, channels, 3, 3)
            shapes[f"input_blocks.{block}.0.op.bias"] = (channels,)
            skips.append(channels)
            block += 1
    shapes.update(_resblock("middle_block.0", channels, channels, emb))
    shapes.update(_transformer("middle_block.1", channels, context))
    shapes.update(_resblock("middle_block.2", channels, channels, emb))
    block = 0
    for level in reversed(range(len(channel_mult))):
        out_channels = channel_mult[level] * model_channels
        for index in range(num_res_blocks + 1):
            shapes.update(_resblock(f"output_blocks.{block}.0", channels + skips.pop(), out_channels, emb))
            channels, layer = out_channels, 1
            if level in attention_levels:
                shapes.update(_transformer(f"output_blocks.{block}.1", channels, context))
                layer = 2
            if level and index == num_res_blocks:
                shapes[f"output_blocks.{block}.{layer}.conv.weight"] = (channels, channels, 3, 3)
                shapes[f"output_blocks.{block}.{layer}.conv.bias"] = (channels,)
            block += 1
    shapes.update(
        {
            "out.0.weight": (model_channels,),
            "out.0.bias": (model_channels,),
            "out.2.weight": (4, model_channels, 3, 3),
            "out.2.bias": (4,),
        }
    )
    return shapes


# A small three-level UNet with attention at the first two levels and two res blocks per level.
SMALL_LDM = {"model_channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_levels": {0, 1}}
SMALL_CONFIG = {
    **MVDREAM_UNET_CONFIG,
    "sample_size": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [16, 32, 32],
    "cross_attention_dim": 24,
    "attention_head_dim": [2, 4, 4],
    "norm_num_groups": 8,
}


def _checkpoint(shapes: dict[str, tuple], device: str = "cpu") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    if device == "meta":
        unet = {UNET_PREFIX + key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    else:
        unet = {UNET_PREFIX + key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    # The rest of the official file: VAE, text tower and schedule buffers, which the converter ignores.
    others = {
        "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 8, 3, 3),
        "betas": torch.zeros(1000),
    }
    return {**unet, **others}


def test_full_size_checkpoint_converts_with_no_missing_or_unexpected_keys():
    shapes = ldm_unet_shapes(320, [1, 2, 4, 4], 2, {0, 1, 2}, 1024)
    assert len(shapes) == 690  # tensors of the real MultiViewUNetModel
    assert sum(torch.Size(shape).numel() for shape in shapes.values()) == 867_572_164
    converted, report = convert_unet(_checkpoint(shapes, device="meta"))
    assert report.ok, report.summary()
    assert len(converted) == 690
    assert converted["class_embedding.linear_1.weight"].shape == (1280, 16)
    assert converted["class_embedding.linear_2.weight"].shape == (1280, 1280)


def test_small_checkpoint_round_trips_through_the_diffusers_folder(tmp_path):
    from diffusers import DDIMScheduler, UNet2DConditionModel

    checkpoint = _checkpoint(ldm_unet_shapes(context=24, **SMALL_LDM))
    path = tmp_path / "sd-v2.1-base-4view.pt"
    torch.save(checkpoint, path)
    report = convert_file(path, tmp_path / "stack", SMALL_CONFIG)
    assert report.ok
    config = json.loads((tmp_path / "stack" / "unet" / "config.json").read_text())
    assert config["class_embed_type"] == "projection"
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "stack" / "unet", local_files_only=True)
    DDIMScheduler.from_pretrained(tmp_path / "stack" / "scheduler", local_files_only=True)
    state = unet.state_dict()
    pairs = {
        "class_embedding.linear_1.weight": "camera_embed.0.weight",
        "class_embedding.linear_2.bias": "camera_embed.2.bias",
        "time_embedding.linear_1.weight": "time_embed.0.weight",
        "conv_in.weight": "input_blocks.0.0.weight",
        "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight": (
            "input_blocks.2.1.transformer_blocks.0.attn1.to_q.weight"
        ),
        "down_blocks.1.resnets.0.conv_shortcut.weight": "input_blocks.4.0.skip_connection.weight",
        "down_blocks.1.downsamplers.0.conv.weight": "input_blocks.6.0.op.weight",
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight": (
            "middle_block.1.transformer_blocks.0.attn2.to_k.weight"
        ),
        "mid_block.resnets.1.time_emb_proj.weight": "middle_block.2.emb_layers.1.weight",
        "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.1.conv.weight",
        "up_blocks.1.upsamplers.0.conv.weight": "output_blocks.5.2.conv.weight",
        "up_blocks.2.attentions.2.proj_out.weight": "output_blocks.8.1.proj_out.weight",
        "conv_out.weight": "out.2.weight",
    }
    for ours, original in pairs.items():
        torch.testing.assert_close(state[ours], checkpoint[UNET_PREFIX + original], rtol=0, atol=0)


def test_converter_rejects_incomplete_or_foreign_checkpoints(tmp_path):
    shapes = ldm_unet_shapes(context=24, **SMALL_LDM)
    checkpoint = _checkpoint(shapes)
    extra = {
        **checkpoint,
        UNET_PREFIX + "input_blocks.1.1.extra.weight": torch.zeros(1),  # inside a block: renamed, unexpected
        UNET_PREFIX + "view_embed.weight": torch.zeros(1),  # outside every block: dropped, unused
    }
    _, report = convert_unet(extra, SMALL_CONFIG)
    assert report.unexpected == ["down_blocks.0.attentions.0.extra.weight"] and not report.missing
    assert report.unused == [UNET_PREFIX + "view_embed.weight"] and not report.ok
    without_camera = {key: value for key, value in checkpoint.items() if "camera_embed" not in key}
    with pytest.raises(ValueError, match="camera embedding"):
        convert_unet(without_camera, SMALL_CONFIG)
    truncated = {key: value for key, value in checkpoint.items() if "out.2" not in key}
    path = tmp_path / "truncated.pt"
    torch.save(truncated, path)
    with pytest.raises(ValueError, match="missing"):
        convert_file(path, tmp_path / "stack", SMALL_CONFIG)
    assert not (tmp_path / "stack").exists()
