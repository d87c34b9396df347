"""Sampling loop layout, guidance, input validation and background removal of the text-to-multiview task."""

import numpy as np
import pytest
import torch
from PIL import Image

from predictors.text_to_multiview.background import BackgroundRemover
from predictors.text_to_multiview.pipeline import MVDreamModels, denoise
from predictors.text_to_multiview.task import PROMPT_SUFFIX, Settings
from predictors.text_to_multiview.unet import MVDREAM_SCHEDULER_CONFIG
from testing.tiny.u2net import write_onnx_matte

VIEWS = 4


class RecordingUNet:
    """Stands in for MultiViewUNet: eps of each image = its context's first value; records every call."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, latents, timestep, context, cameras, num_views):
        self.calls.append((latents.clone(), context.clone(), cameras.clone(), num_views))
        return context[:, 0, 0].reshape(-1, 1, 1, 1).expand_as(latents).clone()


def _models(unet) -> MVDreamModels:
    return MVDreamModels(
        None, None, None, unet, dict(MVDREAM_SCHEDULER_CONFIG), torch.device("cpu"), torch.float32
    )


def _text(uncond: float, cond: float) -> torch.Tensor:
    return torch.stack([torch.full((3, 5), uncond), torch.full((3, 5), cond)])


def test_guided_batch_is_uncond_views_then_cond_views():
    unet = RecordingUNet()
    latents = torch.randn(VIEWS, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    cameras = torch.arange(VIEWS * 16, dtype=torch.float32).reshape(VIEWS, 16)
    denoise(
        _models(unet),
        latents,
        _text(-1.0, 2.0),
        cameras,
        steps=3,
        guidance_scale=5.0,
        progress=lambda _: None,
    )
    assert len(unet.calls) == 3
    model_input, context, camera_batch, num_views = unet.calls[0]
    assert num_views == VIEWS and model_input.shape[0] == 2 * VIEWS
    torch.testing.assert_close(model_input, torch.cat([latents, latents]))
    assert context[:VIEWS].eq(-1.0).all() and context[VIEWS:].eq(2.0).all()
    torch.testing.assert_close(camera_batch, torch.cat([cameras, cameras]))


def test_guidance_combines_uncond_and_cond_predictions():
    latents = torch.randn(VIEWS, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    cameras = torch.zeros(VIEWS, 16)
    quiet = {"steps": 4, "progress": lambda _: None}
    guided = denoise(_models(RecordingUNet()), latents, _text(0.5, 0.2), cameras, guidance_scale=3.0, **quiet)
    # eps = uncond + 3 (cond - uncond) = -0.4, given directly as the conditional prediction at scale 1.
    unet = RecordingUNet()
    direct = denoise(
        _models(unet), latents, _text(9.0, 0.5 + 3.0 * (0.2 - 0.5)), cameras, guidance_scale=1.0, **quiet
    )
    torch.testing.assert_close(guided, direct)
    assert unet.calls[0][0].shape[0] == VIEWS  # scale 1: only the conditional half runs


def test_settings_defaults_and_validation():
    settings = Settings.from_inputs({"prompt": " a red chair "})
    assert settings.prompt == "a red chair" + PROMPT_SUFFIX
    assert (settings.steps, settings.guidance_scale, settings.image_size) == (50, 7.5, 256)
    assert (settings.elevation, settings.azimuth_start) == (15.0, 90.0)
    assert (settings.output_3d, settings.negative_prompt) == (False, "")
    assert Settings.from_inputs({"prompt": "a lamp, 3d asset"}).prompt == "a lamp, 3d asset"
    with pytest.raises(ValueError, match="multiple of 64"):
        Settings.from_inputs({"prompt": "x", "image_size": 200})
    with pytest.raises(ValueError, match="prompt"):
        Settings.from_inputs({"prompt": "  "})


def _square_on_white(size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    image = np.ones((size, size, 3), np.float32)
    mask = np.zeros((size, size), bool)
    mask[30:70, 25:65] = True
    image[mask] = (0.1, 0.2, 0.3)
    return image, mask


def test_plain_background_fallback_finds_the_object():
    image, mask = _square_on_white()
    remover = BackgroundRemover(None)
    assert remover.method == "plain-background colour"
    alphas = remover.alphas(np.stack([image, image[::-1]]))
    np.testing.assert_array_equal(alphas[0] > 0.5, mask)
    np.testing.assert_array_equal(alphas[1] > 0.5, mask[::-1])
    with pytest.raises(ValueError, match="could not separate"):
        remover.alphas(np.ones((1, 64, 64, 3), np.float32))


def test_u2net_path_pre_and_post_processing(tmp_path):
    """An ONNX stand-in for U^2-Net that scores dark pixels as foreground: the matte must follow the object
    through the resize to 320, the normalisation, the min-max scaling and the resize back."""
    path = tmp_path / "u2net.onnx"
    write_onnx_matte(path, np.zeros((320, 320), np.float32), input_weights=[-1.0, -1.0, -1.0])
    image, mask = _square_on_white()
    remover = BackgroundRemover(path)
    assert remover.method == "u2net"
    alpha = remover.alphas(image[None])[0]
    assert alpha.shape == mask.shape and alpha.min() >= 0.0 and alpha.max() <= 1.0
    wrong = (alpha > 0.5) != mask
    assert wrong.sum() <= 2 * (40 + 40)  # at most a one-pixel band along the square's outline
    assert alpha[mask].mean() > 0.9 and alpha[~mask].mean() < 0.1


@pytest.mark.cuda
def test_tiny_run_in_half_precision_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from predictors.runtime import RunContext
    from predictors.text_to_multiview.task import load
    from testing.tiny import build_tiny_stacks

    build_tiny_stacks(tmp_path / "weights", ["mvdream-sd21", "sd21-base", "u2net"])
    device = torch.device("cuda")
    runner = load(tmp_path / "weights", device)
    assert runner.models.dtype == torch.float16
    views = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        files = runner.run(
            {"prompt": "a mug", "steps": 4, "image_size": 128, "output_3d": True}, RunContext(out, device, 5)
        )
        assert [path.name for path in files][-3:] == ["model.glb", "turntable.mp4", "preview.png"]
        views.append(np.asarray(Image.open(out / "view_0.png")))
    np.testing.assert_array_equal(views[0], views[1])
