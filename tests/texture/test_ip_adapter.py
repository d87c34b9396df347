"""IP-Adapter glue for the texture task, checked against diffusers' own pipeline route (load_ip_adapter +
prepare_ip_adapter_image_embeds) on tiny random SD1.5 and SDXL UNets and a tiny CLIP image encoder."""

import numpy as np
import pytest
import torch
from PIL import Image

from predictors.diffusion.attention import MultiViewSelfAttention, install_multiview_attention
from predictors.texture.ip_adapter import (
    ADAPTER_FILES,
    image_prompt_embeds,
    install_ip_adapter,
    load_image_encoder,
    load_image_prompt,
    set_ip_adapter_scale,
)
from testing.tiny.ip_adapter import build_tiny_ip_adapter
from testing.tiny.sd15 import _tiny_unet
from testing.tiny.sdxl import TINY_SDXL_POOLED_DIM, tiny_sdxl_unet

UNET_SEED = 5
VIEWS = 2
UNETS = {"sd15": _tiny_unet, "sdxl": tiny_sdxl_unet}


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ip-adapter")
    build_tiny_ip_adapter(folder, seed=3)
    return folder


@pytest.fixture(scope="module")
def encoder(adapter_dir):
    return load_image_encoder(adapter_dir, torch.float32)


def _prompt_image() -> Image.Image:
    rows, columns = np.mgrid[0:40, 0:56]
    pixels = np.stack([rows * 6, columns * 4, (rows + columns) * 2], axis=-1) % 256
    return Image.fromarray(pixels.astype(np.uint8))


def _unet_inputs(family: str, unet) -> dict:
    """Seeded latents, timestep, text and (SDXL) pooled text / size ids for a [2N] batch."""
    generator = torch.Generator().manual_seed(11)
    batch = 2 * VIEWS
    inputs = {
        "sample": torch.randn(batch, 4, 8, 8, generator=generator),
        "timestep": 500,
        "encoder_hidden_states": torch.randn(batch, 7, unet.config.cross_attention_dim, generator=generator),
    }
    extra = {}
    if family == "sdxl":
        extra["text_embeds"] = torch.randn(batch, TINY_SDXL_POOLED_DIM, generator=generator)
        extra["time_ids"] = torch.tensor([[96.0, 96.0, 0.0, 0.0, 96.0, 96.0]]).repeat(batch, 1)
    return inputs, extra


@torch.no_grad()
def _run(unet, family: str, image_embeds=None) -> torch.Tensor:
    inputs, extra = _unet_inputs(family, unet)
    if image_embeds is not None:
        extra["image_embeds"] = image_embeds
    return unet(**inputs, added_cond_kwargs=extra).sample


def _installed(family: str, adapter_dir, scale: float):
    unet = UNETS[family](UNET_SEED)
    install_ip_adapter(unet, adapter_dir / ADAPTER_FILES[family])
    set_ip_adapter_scale(unet, scale)
    return unet


def _diffusers_pipeline(family: str, adapter_dir):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    unet = UNETS[family](UNET_SEED)
    if family == "sd15":
        pipe = StableDiffusionPipeline(
            vae=None,
            text_encoder=None,
            tokenizer=None,
            unet=unet,
            scheduler=None,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
    else:
        pipe = StableDiffusionXLPipeline(
            vae=None,
            text_encoder=None,
            text_encoder_2=None,
            tokenizer=None,
            tokenizer_2=None,
            unet=unet,
            scheduler=None,
            image_encoder=None,
            feature_extractor=None,
            add_watermarker=False,
        )
    subfolder, weight_name = ADAPTER_FILES[family].split("/")
    pipe.load_ip_adapter(
        str(adapter_dir),
        subfolder=subfolder,
        weight_name=weight_name,
        image_encoder_folder="models/image_encoder",
        local_files_only=True,
    )
    return pipe


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_matches_diffusers_pipeline_route(family, adapter_dir, encoder):
    image = _prompt_image()
    pipe = _diffusers_pipeline(family, adapter_dir)
    pipe.set_ip_adapter_scale(0.5)
    with torch.no_grad():
        expected_embeds = pipe.prepare_ip_adapter_image_embeds(image, None, "cpu", VIEWS, True)
    expected = _run(pipe.unet, family, expected_embeds)

    unet = _installed(family, adapter_dir, 0.5)
    embeds = image_prompt_embeds(*encoder, image, VIEWS, "cpu", torch.float32)
    assert len(embeds) == len(expected_embeds) == 1
    assert embeds[0].shape == expected_embeds[0].shape == (2 * VIEWS, 1, 17, 32)
    torch.testing.assert_close(embeds[0], expected_embeds[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_run(unet, family, embeds), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_scale_zero_is_the_plain_unet(family, adapter_dir, encoder):
    plain = _run(UNETS[family](UNET_SEED), family)
    embeds = image_prompt_embeds(*encoder, _prompt_image(), VIEWS, "cpu", torch.float32)
    no_image = image_prompt_embeds(*encoder, None, VIEWS, "cpu", torch.float32)
    unet = _installed(family, adapter_dir, 0.0)
    torch.testing.assert_close(_run(unet, family, embeds), plain, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_run(unet, family, no_image), plain, atol=1e-6, rtol=1e-6)
    set_ip_adapter_scale(unet, 0.5)
    assert (_run(unet, family, embeds) - plain).abs().max() > 1e-3


def test_embeds_are_penultimate_states_of_image_and_zero_pixels(encoder):
    model, processor = encoder
    image = _prompt_image()
    with torch.no_grad():
        pixels = processor(image, return_tensors="pt").pixel_values
        own = model(pixels, output_hidden_states=True).hidden_states[-2][0]
        zero = model(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2][0]
    with_image = image_prompt_embeds(model, processor, image, 3, "cpu", torch.float32)[0]
    without = image_prompt_embeds(model, processor, None, 3, "cpu", torch.float32)[0]
    assert with_image.shape == without.shape == (6, 1, 17, 32)
    for index in range(3):
        torch.testing.assert_close(with_image[index, 0], zero, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(with_image[3 + index, 0], own, atol=1e-5, rtol=1e-5)
    for index in range(6):
        torch.testing.assert_close(without[index, 0], zero, atol=1e-5, rtol=1e-5)
    half = image_prompt_embeds(model, processor, image, 1, "cpu", torch.float16)[0]
    assert half.dtype == torch.float16
    with pytest.raises(ValueError, match="views must be at least 1"):
        image_prompt_embeds(model, processor, image, 0, "cpu", torch.float32)


@pytest.mark.parametrize("adapter_first", [True, False])
def test_multiview_attention_keeps_ip_processors_in_either_order(adapter_first, adapter_dir, encoder):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    neighbours, reference = [[0, 1], [0, 1]], [0]
    unet = _tiny_unet(UNET_SEED)
    adapter = adapter_dir / ADAPTER_FILES["sd15"]
    if adapter_first:
        install_ip_adapter(unet, adapter)
        multiview = install_multiview_attention(unet, MultiViewSelfAttention(neighbours, reference))
    else:
        multiview = install_multiview_attention(unet, MultiViewSelfAttention(neighbours, reference))
        install_ip_adapter(unet, adapter)
    set_ip_adapter_scale(unet, 0.5)
    unet_layers = {name: p for name, p in unet.attn_processors.items() if "transformer_blocks" in name}
    assert {name for name, p in unet_layers.items() if p is multiview} == {
        name for name in unet_layers if name.endswith("attn1.processor")
    }
    assert all(isinstance(p, IPAdapterAttnProcessor2_0) for name, p in unet_layers.items() if "attn2" in name)
    embeds = image_prompt_embeds(*encoder, _prompt_image(), VIEWS, "cpu", torch.float32)

    reference_unet = _tiny_unet(UNET_SEED)  # the documented order, as the oracle for both
    install_ip_adapter(reference_unet, adapter)
    install_multiview_attention(reference_unet, MultiViewSelfAttention(neighbours, reference))
    set_ip_adapter_scale(reference_unet, 0.5)
    torch.testing.assert_close(_run(unet, "sd15", embeds), _run(reference_unet, "sd15", embeds))
    assert isinstance(multiview, MultiViewSelfAttention)


def test_adapter_file_must_fit_the_unet(adapter_dir, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ValueError, match="does not match this UNet"):
        install_ip_adapter(_tiny_unet(UNET_SEED), adapter_dir / ADAPTER_FILES["sdxl"])
    with pytest.raises(ValueError, match="does not match this UNet"):
        install_ip_adapter(tiny_sdxl_unet(UNET_SEED), adapter_dir / ADAPTER_FILES["sd15"])
    not_plus = tmp_path / "ip-adapter_sd15.safetensors"
    save_file(
        {"image_proj.proj.weight": torch.zeros(128, 16), "ip_adapter.1.to_k_ip.weight": torch.zeros(1)},
        not_plus,
    )
    with pytest.raises(ValueError, match="not an IP-Adapter 'plus' file"):
        install_ip_adapter(_tiny_unet(UNET_SEED), not_plus)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_text("not tensors")
    with pytest.raises(ValueError, match="cannot read IP-Adapter file"):
        install_ip_adapter(_tiny_unet(UNET_SEED), garbage)


def test_scale_needs_an_adapter_and_a_valid_value(adapter_dir):
    with pytest.raises(ValueError, match="no IP-Adapter installed"):
        set_ip_adapter_scale(_tiny_unet(UNET_SEED), 0.5)
    unet = _installed("sd15", adapter_dir, 0.25)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="image_prompt_scale"):
            set_ip_adapter_scale(unet, bad)


def test_load_image_prompt_rejects_text(tmp_path):
    path = tmp_path / "prompt.png"
    path.write_text("a red chair, not an image\n" * 4)
    with pytest.raises(ValueError, match="image_prompt is not an image"):
        load_image_prompt(path)


def test_load_image_prompt_composites_alpha_on_white(tmp_path):
    pixels = np.zeros((20, 30, 4), dtype=np.uint8)
    pixels[..., 0] = 200  # red everywhere
    pixels[:, :10, 3] = 0  # transparent
    pixels[:, 10:20, 3] = 255  # opaque
    pixels[:, 20:, 3] = 128  # half
    path = tmp_path / "prompt.png"
    Image.fromarray(pixels, "RGBA").save(path)
    image = load_image_prompt(path)
    assert image.mode == "RGB" and image.size == (30, 20)
    result = np.asarray(image).astype(np.int32)
    alpha = 128 / 255
    half = [200 * alpha + 255 * (1 - alpha), 255 * (1 - alpha), 255 * (1 - alpha)]
    np.testing.assert_array_equal(result[:, :10], np.full((20, 10, 3), 255))
    np.testing.assert_array_equal(result[:, 10:20], np.broadcast_to([200, 0, 0], (20, 10, 3)))
    assert np.abs(result[:, 20:] - np.array(half)).max() <= 1
