"""Tiny random stacks in the official layouts of ``trellis-image-large`` (``pipeline.json`` + ``ckpts/*``) and
``dinov2-with-registers-large`` (transformers folder), small enough for CPU tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SLAT_NORMALIZATION = {  # the published values (configs/generation/slat_flow_img_dit_L_64l8p2_fp16.json)
    "mean": [-2.1687546, -0.0043470, -0.1335235, -0.0841807, -0.5271206, 0.7238689, -1.1414450, 1.2039363],
    "std": [2.3776507, 2.3863783, 2.1244180, 2.1748552, 2.6639447, 2.3711922, 2.6217446, 2.6845231],
}
TINY_CONDITION_CHANNELS = 64
TINY_MODELS = {
    "sparse_structure_flow_model": (
        "ss_flow_img_dit_L_16l8_fp16",
        "SparseStructureFlowModel",
        {
            "resolution": 4,
            "in_channels": 8,
            "out_channels": 8,
            "model_channels": 64,
            "cond_channels": 64,
            "num_blocks": 1,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 1,
            "pe_mode": "ape",
            "qk_rms_norm": True,
            "use_fp16": False,
        },
    ),
    "sparse_structure_decoder": (
        "ss_dec_conv3d_16l8_fp16",
        "SparseStructureDecoder",
        {
            "out_channels": 1,
            "latent_channels": 8,
            "num_res_blocks": 1,
            "num_res_blocks_middle": 1,
            "channels": [32, 16, 8],
            "use_fp16": False,
        },
    ),
    "slat_flow_model": (
        "slat_flow_img_dit_L_64l8p2_fp16",
        "SLatFlowModel",
        {
            "resolution": 16,
            "in_channels": 8,
            "out_channels": 8,
            "model_channels": 64,
            "cond_channels": 64,
            "num_blocks": 1,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 2,
            "num_io_res_blocks": 1,
            "io_block_channels": [32],
            "pe_mode": "ape",
            "qk_rms_norm": True,
            "use_fp16": False,
        },
    ),
    "slat_decoder_mesh": (
        "slat_dec_mesh_swin8_B_64l8m256c_fp16",
        "SLatMeshDecoder",
        {
            "resolution": 16,
            "model_channels": 256,
            "latent_channels": 8,
            "num_blocks": 1,
            "num_heads": 4,
            "mlp_ratio": 2,
            "attn_mode": "swin",
            "window_size": 4,
            "use_fp16": False,
            "representation_config": {"use_color": True},
        },
    ),
}
TINY_SAMPLER = {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5}}


def build_tiny_trellis(out_dir: Path, seed: int) -> None:
    """Write a tiny random ``pipeline.json`` + ``ckpts/*`` stack.

    The mesh decoder's head is damped and biased so that every active voxel is inside with a plain colour:
    the mesh is then the closed boundary of the generated structure, which tests can check.
    """
    from safetensors.torch import save_file

    from predictors.image_to_3d.trellis.models import build_model

    ckpts = Path(out_dir) / "ckpts"
    ckpts.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for key, (stem, name, args) in TINY_MODELS.items():
            model = build_model(name, args)
            if key == "slat_decoder_mesh":
                with torch.no_grad():
                    model.out_layer.weight.mul_(0.01)
                    model.out_layer.bias.zero_()
                    model.out_layer.bias[0:8] = -0.25  # sdf: inside
                    model.out_layer.bias[53:101] = torch.tensor([1.5, -0.5, -1.5, 0.0, 0.0, 0.0]).repeat(8)
            (ckpts / f"{stem}.json").write_text(json.dumps({"name": name, "args": args}, indent=2))
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(ckpts / f"{stem}.safetensors"))
    sampler_params = {"steps": 25, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0}
    pipeline = {
        "name": "TrellisImageTo3DPipeline",
        "args": {
            "models": {key: f"ckpts/{stem}" for key, (stem, _, _) in TINY_MODELS.items()},
            "sparse_structure_sampler": {**TINY_SAMPLER, "params": {**sampler_params, "cfg_strength": 7.5}},
            "slat_sampler": {**TINY_SAMPLER, "params": {**sampler_params, "cfg_strength": 3.0}},
            "slat_normalization": SLAT_NORMALIZATION,
            "image_cond_model": "dinov2_vitl14_reg",
        },
    }
    (Path(out_dir) / "pipeline.json").write_text(json.dumps(pipeline, indent=2))


def build_tiny_dinov2(out_dir: Path, seed: int) -> None:
    """Write a tiny random ``Dinov2WithRegistersModel`` folder (transformers layout, 1374 tokens at 518²)."""
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    config = Dinov2WithRegistersConfig(
        hidden_size=TINY_CONDITION_CHANNELS,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * TINY_CONDITION_CHANNELS,
        patch_size=14,
        image_size=518,
        num_register_tokens=4,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Dinov2WithRegistersModel(config)
    model.save_pretrained(str(out_dir))
