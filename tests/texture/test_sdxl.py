"""SDXL pieces of the texture task: tiny sdxl-base / ControlNet stacks and SDXL prompt conditioning.

Oracles: diffusers' StableDiffusionXLPipeline loaded from the tiny folder (encode_prompt, _get_add_time_ids),
the scaled-linear beta formula, and the token ids' padding written out by hand.
"""

from __future__ import annotations

import json

import pytest
import torch

from predictors.diffusion.prompts import encode_sdxl_prompts, sdxl_time_ids
from testing.tiny.sdxl import build_tiny_controlnet_sdxl, build_tiny_sdxl_base
from weights.manifest import load_manifest

CPU = torch.device("cpu")
POSITIVES = ["a red boot, front view.", "a red boot, side view.", "a red boot, back view."]
NEGATIVES = ["blurry, view.", "blurry, front view.", "blurry, front view."]
LONG_PROMPT = "a very long prompt " * 30  # > 77 tokens with the tiny (mostly per-character) vocabulary


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    build_tiny_sdxl_base(root / "sdxl-base", seed=0)
    build_tiny_controlnet_sdxl(root / "controlnet-sdxl-depth", seed=0)
    return root


@pytest.fixture(scope="module")
def pipeline(stacks):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(
        stacks / "sdxl-base", local_files_only=True, variant="fp16", dtype=torch.float32
    )


@pytest.mark.parametrize("stack", ["sdxl-base", "controlnet-sdxl-depth"])
def test_tiny_folders_hold_the_manifest_files(stacks, stack):
    manifest = load_manifest()
    if stack not in manifest:
        pytest.skip(f"{stack} is not in the manifest")
    assert [path for path in manifest[stack].installed_paths if not (stacks / stack / path).is_file()] == []


def test_base_folder_loads_as_sdxl_pipeline(stacks, pipeline):
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    assert isinstance(pipeline.scheduler, EulerDiscreteScheduler)
    assert type(pipeline.text_encoder) is CLIPTextModel
    assert isinstance(pipeline.text_encoder_2, CLIPTextModelWithProjection)
    assert pipeline.text_encoder.config.hidden_act == "quick_gelu"
    assert pipeline.text_encoder_2.config.hidden_act == "gelu"
    assert pipeline.vae.config.scaling_factor == 0.13025 and pipeline.vae.config.force_upcast
    assert pipeline.vae_scale_factor == 8
    index = json.loads((stacks / "sdxl-base" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"


def test_tokenizers_pad_like_sdxl(pipeline):
    vocab = pipeline.tokenizer.get_vocab()
    bos, eos, bang = vocab["<|startoftext|>"], vocab["<|endoftext|>"], vocab["!"]
    first = pipeline.tokenizer("a", padding="max_length", max_length=77).input_ids
    second = pipeline.tokenizer_2("a", padding="max_length", max_length=77).input_ids
    a = vocab["a</w>"]
    assert first == [bos, a, eos] + [eos] * 74
    assert second == [bos, a, eos] + [bang] * 74


def test_scheduler_config_gives_sdxl_betas(stacks):
    from diffusers import DDPMScheduler

    config = DDPMScheduler.load_config(stacks / "sdxl-base" / "scheduler", local_files_only=True)
    assert config["_class_name"] == "EulerDiscreteScheduler"
    assert config["steps_offset"] == 1 and config["timestep_spacing"] == "leading"
    scheduler = DDPMScheduler.from_config(config)
    expected = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(scheduler.betas.double(), expected, rtol=1e-6, atol=0)
    assert scheduler.config.prediction_type == "epsilon"


def test_prompt_encoding_matches_diffusers(pipeline, capsys):
    positives, negatives = [*POSITIVES, LONG_PROMPT], [*NEGATIVES, "ugly, front view."]
    embeds, negative_embeds, pooled, negative_pooled = pipeline.encode_prompt(
        positives, device=CPU, do_classifier_free_guidance=True, negative_prompt=negatives
    )
    capsys.readouterr()
    tokenizers = (pipeline.tokenizer, pipeline.tokenizer_2)
    encoders = (pipeline.text_encoder, pipeline.text_encoder_2)
    ours, ours_pooled = encode_sdxl_prompts(tokenizers, encoders, [*negatives, *positives], CPU)
    assert "truncated" in capsys.readouterr().out
    assert ours.shape == (8, 77, 64) and ours_pooled.shape == (8, 32)
    count = len(negatives)
    torch.testing.assert_close(ours[:count], negative_embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[count:], embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_pooled[:count], negative_pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_pooled[count:], pooled, rtol=0, atol=1e-6)


def test_short_prompts_are_not_reported_truncated(pipeline, capsys):
    encode_sdxl_prompts(
        (pipeline.tokenizer, pipeline.tokenizer_2),
        (pipeline.text_encoder, pipeline.text_encoder_2),
        POSITIVES,
        CPU,
    )
    assert "truncated" not in capsys.readouterr().out


@pytest.mark.parametrize(("height", "width"), [(96, 96), (1024, 768)])
def test_time_ids_match_diffusers(pipeline, height, width):
    expected = pipeline._get_add_time_ids(
        (height, width), (0, 0), (height, width), dtype=torch.float32, text_encoder_projection_dim=32
    )
    ours = sdxl_time_ids(height, width, count=5)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected.repeat(5, 1), rtol=0, atol=0)


def test_controlnet_and_unet_take_the_task_shapes(stacks, pipeline):
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_pretrained(
        stacks / "controlnet-sdxl-depth", local_files_only=True, variant="fp16", dtype=torch.float32
    )
    views, h, w = 2, 12, 16
    batch = 2 * views
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, h, w, generator=generator)
    condition = torch.rand(batch, 3, 8 * h, 8 * w, generator=generator)
    prompts = [*NEGATIVES[:views], *POSITIVES[:views]]
    context, pooled = encode_sdxl_prompts(
        (pipeline.tokenizer, pipeline.tokenizer_2),
        (pipeline.text_encoder, pipeline.text_encoder_2),
        prompts,
        CPU,
    )
    assert context.shape == (batch, 77, 64)
    added = {"text_embeds": pooled, "time_ids": sdxl_time_ids(8 * h, 8 * w, batch)}
    timestep = torch.tensor(500)
    with torch.no_grad():
        down, mid = controlnet(
            latents,
            timestep,
            encoder_hidden_states=context,
            controlnet_cond=condition,
            conditioning_scale=0.7,
            added_cond_kwargs=added,
            return_dict=False,
        )
        noise = pipeline.unet(
            latents,
            timestep,
            encoder_hidden_states=context,
            added_cond_kwargs=added,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
    # The UNet adds each residual to its own skip features, so mismatched shapes would have raised above.
    assert all(r.shape[0] == batch for r in down) and mid.shape[0] == batch
    assert noise.shape == latents.shape and torch.isfinite(noise).all()
