"""Single-file SD1.5 / SDXL checkpoints: listing and name checks, family detection, strict loading.

Oracles: the tiny diffusers stacks themselves (a checkpoint written from a stack and loaded back must give every
tensor of that stack), and key names of the real SD1.5 / SDXL checkpoints for the original layout.
"""

import os
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from predictors.texture.checkpoints import (
    CHECKPOINT_DIR,
    checkpoint_family,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
)
from testing.tiny.checkpoint import ldm_unet_tensors, ldm_vae_tensors, write_single_file_checkpoint
from testing.tiny.sd15 import build_tiny_sd15
from testing.tiny.sdxl import build_tiny_sdxl_base

COMPONENTS = {
    "sd15": ("unet", "vae", "text_encoder"),
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2"),
}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Tiny ``sd15`` and ``sdxl-base`` stacks and the single-file checkpoints written from them."""
    root = tmp_path_factory.mktemp("checkpoints")
    build_tiny_sd15(root / "sd15", seed=3)
    build_tiny_sdxl_base(root / "sdxl-base", seed=5)
    files = {}
    for family, stack in (("sd15", "sd15"), ("sdxl", "sdxl-base")):
        files[family] = root / CHECKPOINT_DIR / f"tiny-{family}.safetensors"
        write_single_file_checkpoint(root / stack, family, files[family])
    return {"root": root, "base": {"sd15": root / "sd15", "sdxl": root / "sdxl-base"}, "file": files}


def _reference(base, component, dtype):
    """A component of the diffusers stack, loaded the ordinary way (fp16 variant files where the stack has them)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = base / component
    variant = "fp16" if any(".fp16." in path.name for path in folder.iterdir()) else None
    if component in ("unet", "vae"):
        cls = UNet2DConditionModel if component == "unet" else AutoencoderKL
        return cls.from_pretrained(folder, variant=variant, torch_dtype=dtype, local_files_only=True)
    cls = CLIPTextModel if component == "text_encoder" else CLIPTextModelWithProjection
    return cls.from_pretrained(folder, variant=variant, dtype=dtype, local_files_only=True)


@pytest.mark.parametrize(("family", "dtype"), [("sd15", torch.float32), ("sdxl", torch.float16)])
def test_round_trip_gives_every_tensor_of_the_stack(stacks, family, dtype, capsys):
    parts = load_checkpoint(stacks["file"][family], family, stacks["base"][family], dtype)
    assert f"checkpoint tiny-{family}" in capsys.readouterr().out
    for component in COMPONENTS[family]:
        got = getattr(parts, component).state_dict()
        want = _reference(stacks["base"][family], component, dtype).state_dict()
        assert set(got) == set(want), component
        for name, tensor in want.items():
            assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), f"{component}.{name}"
    if family == "sdxl":
        assert "text_projection.weight" in parts.text_encoder_2.state_dict()
        assert parts.tokenizer_2.pad_token == "!" and parts.tokenizer.pad_token == "<|endoftext|>"
    else:
        assert parts.tokenizer_2 is None and parts.text_encoder_2 is None
    assert parts.tokenizer("a view").input_ids[0] == parts.tokenizer.bos_token_id


def test_written_files_use_the_original_layout(stacks):
    sdxl = load_file(stacks["file"]["sdxl"])
    prefix = "conditioner.embedders.1.model."
    width = sdxl[prefix + "ln_final.weight"].shape[0]
    assert sdxl[prefix + "transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * width, width)
    assert sdxl[prefix + "transformer.resblocks.1.mlp.c_proj.bias"].shape == (width,)
    assert prefix + "positional_embedding" in sdxl and prefix + "text_projection" in sdxl
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in sdxl
    assert "model.diffusion_model.label_emb.0.2.weight" in sdxl
    sd15 = load_file(stacks["file"]["sd15"])
    assert sd15["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 convolutions
    assert "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.bias" in sd15


def test_unet_and_vae_names_match_real_checkpoints():
    """Real-size SD1.5 / SDXL UNets and the SD VAE (built on the meta device) map to key names found in the
    official checkpoints (several of them diffusers' own markers for recognising those files)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        sd15 = UNet2DConditionModel(cross_attention_dim=768)
        sdxl = UNet2DConditionModel(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
        )
    sd15_names = set(ldm_unet_tensors(sd15.state_dict(), 2))
    assert len(sd15_names) == 686
    assert {
        "output_blocks.11.0.skip_connection.weight",
        "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.1.0.in_layers.0.weight",
        "input_blocks.1.0.in_layers.2.weight",
        "input_blocks.1.0.emb_layers.1.bias",
        "input_blocks.1.0.out_layers.0.weight",
        "input_blocks.1.0.out_layers.3.weight",
        "input_blocks.4.0.skip_connection.weight",
        "input_blocks.3.0.op.weight",
        "input_blocks.9.0.op.bias",
        "input_blocks.11.0.out_layers.3.bias",
        "middle_block.1.proj_in.weight",
        "middle_block.2.in_layers.2.weight",
        "output_blocks.2.1.conv.weight",
        "output_blocks.5.2.conv.weight",
        "output_blocks.8.2.conv.bias",
        "output_blocks.3.1.transformer_blocks.0.ff.net.0.proj.weight",
        "time_embed.0.weight",
        "time_embed.2.bias",
        "out.0.weight",
        "out.2.weight",
    } <= sd15_names
    sdxl_names = set(ldm_unet_tensors(sdxl.state_dict(), 2))
    assert {
        "label_emb.0.0.weight",
        "label_emb.0.2.bias",
        "input_blocks.6.0.op.weight",
        "input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight",
        "middle_block.1.transformer_blocks.9.ff.net.2.bias",
        "output_blocks.2.2.conv.weight",
        "output_blocks.5.2.conv.weight",
        "output_blocks.8.0.skip_connection.weight",
    } <= sdxl_names
    assert not any(
        name.startswith(("output_blocks.8.1", "output_blocks.8.2", "input_blocks.9")) for name in sdxl_names
    )
    vae_names = set(ldm_vae_tensors(vae.state_dict(), 4))
    assert len(vae_names) == 248
    assert {
        "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.down.2.downsample.conv.weight",
        "encoder.mid.attn_1.proj_out.weight",
        "encoder.norm_out.weight",
        "decoder.up.0.block.2.conv2.weight",
        "decoder.up.0.block.0.nin_shortcut.weight",
        "decoder.up.3.upsample.conv.weight",
        "decoder.mid.block_2.norm2.bias",
        "decoder.mid.attn_1.norm.weight",
        "post_quant_conv.weight",
    } <= vae_names
    assert not any(
        name.startswith(("decoder.up.0.upsample", "encoder.down.3.downsample")) for name in vae_names
    )


def test_family_comes_from_the_header(stacks, tmp_path):
    assert checkpoint_family(stacks["file"]["sd15"]) == "sd15"
    assert checkpoint_family(stacks["file"]["sdxl"]) == "sdxl"
    cases = {
        "unrelated": ({"double_blocks.0.img_attn.norm.key_norm.scale": [4]}, "not an SD1.5 or SDXL"),
        "inpainting": (
            {
                "model.diffusion_model.input_blocks.0.0.weight": [2, 9, 3, 3],
                "cond_stage_model.transformer.x": [1],
            },
            "inpainting",
        ),
        "sd21": (
            {"model.diffusion_model.input_blocks.0.0.weight": [2, 4, 3, 3], "cond_stage_model.model.x": [1]},
            "SD 2.x",
        ),
        "refiner": (
            {
                "model.diffusion_model.input_blocks.0.0.weight": [2, 4, 3, 3],
                "conditioner.embedders.0.model.x": [1],
            },
            "refiner",
        ),
    }
    for name, (shapes, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({key: torch.zeros(shape) for key, shape in shapes.items()}, path)
        with pytest.raises(ValueError, match=message):
            checkpoint_family(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"not a readable \.safetensors"):
        checkpoint_family(garbage)


def test_checkpoint_names_are_validated_and_listed(tmp_path):
    folder = tmp_path / CHECKPOINT_DIR
    folder.mkdir()
    for name in ("dreamshaper_8.safetensors", "juggernaut-xl.v9.safetensors", "notes.txt", "model.ckpt"):
        (folder / name).write_bytes(b"x")
    (folder / "folder.safetensors").mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    os.symlink(tmp_path / "outside.safetensors", folder / "escape.safetensors")
    os.symlink(folder / "dreamshaper_8.safetensors", folder / "alias.safetensors")
    installed = list_checkpoints(tmp_path)
    assert list(installed) == ["alias", "dreamshaper_8", "juggernaut-xl.v9"]
    assert checkpoint_path(tmp_path, "juggernaut-xl.v9") == folder / "juggernaut-xl.v9.safetensors"
    for bad in ("../outside", "a/b", "escape", "model", "notes", "folder", "", ".hidden", "x" * 101, None):
        with pytest.raises(
            ValueError, match=re.escape("installed checkpoints: alias, dreamshaper_8, juggernaut-xl.v9")
        ):
            checkpoint_path(tmp_path, bad)
    assert list_checkpoints(tmp_path / "nowhere") == {}
    with pytest.raises(ValueError, match="installed checkpoints: none"):
        checkpoint_path(tmp_path / "nowhere", "dreamshaper_8")


@pytest.mark.parametrize(
    ("family", "edit", "message"),
    [
        ("sd15", {"drop": "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"}, "1 weights missing"),
        ("sd15", {"drop": "model.diffusion_model.out.2.bias"}, "weights missing"),
        ("sd15", {"drop": "first_stage_model.decoder.mid.attn_1.v.bias"}, "weights missing"),
        (
            "sd15",
            {"drop": "cond_stage_model.transformer.text_model.final_layer_norm.weight"},
            "weights missing",
        ),
        ("sdxl", {"drop": "model.diffusion_model.label_emb.0.0.weight"}, "lacks the tensor"),
        (
            "sdxl",
            {"drop": "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_bias"},
            "missing",
        ),
        ("sdxl", {"drop": "conditioner.embedders.1.model.text_projection"}, "missing"),
        ("sd15", {"add": "model.diffusion_model.input_blocks.1.0.extra.weight"}, "unexpected"),
        ("sd15", {"add": "model.diffusion_model.extra_head.weight"}, "unexpected"),
        ("sdxl", {"add": "conditioner.embedders.1.model.extra"}, "unexpected"),
        ("sdxl", {"add": "conditioner.embedders.0.transformer.text_model.extra.weight"}, "unexpected"),
    ],
)
def test_incomplete_or_foreign_tensors_are_rejected(stacks, tmp_path, family, edit, message):
    tensors = load_file(stacks["file"][family])
    if "drop" in edit:
        del tensors[edit["drop"]]
    else:
        tensors[edit["add"]] = torch.zeros(2)
    path = tmp_path / "edited.safetensors"
    save_file(tensors, path)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path, family, stacks["base"][family], torch.float32)


def test_wrong_shapes_family_and_missing_base_stack_are_clear_errors(stacks, tmp_path):
    tensors = load_file(stacks["file"]["sd15"])
    tensors["model.diffusion_model.out.2.weight"] = torch.zeros(4, 32, 1, 1)
    path = tmp_path / "reshaped.safetensors"
    save_file(tensors, path)
    with pytest.raises(ValueError, match="does not match the sd15 config"):
        load_checkpoint(path, "sd15", stacks["base"]["sd15"], torch.float32)
    with pytest.raises(ValueError, match=r"is an SD1\.5 checkpoint, not SDXL"):
        load_checkpoint(stacks["file"]["sd15"], "sdxl", stacks["base"]["sdxl"], torch.float32)
    with pytest.raises(ValueError, match="SDXL checkpoint; it needs the sdxl-base stack installed"):
        load_checkpoint(stacks["file"]["sdxl"], "sdxl", tmp_path / "sdxl-base", torch.float32)
    with pytest.raises(ValueError, match="unknown checkpoint family"):
        load_checkpoint(stacks["file"]["sdxl"], "flux", stacks["base"]["sdxl"], torch.float32)
