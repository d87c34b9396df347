"""Sampling loop layout, guidance and input validation of the text-to-multiview task."""

import numpy as np
import pytest
import torch

from predictors.background import BackgroundRemover
from predictors.inputs import parse_inputs
from predictors.placement import Placement
from predictors.runtime import LoadEnv
from predictors.text_to_multiview.cameras import FRONT_AZIMUTH, NUM_VIEWS, view_azimuths
from predictors.text_to_multiview.inputs import TextToMultiviewInputs
from predictors.text_to_multiview.pipeline import MVDreamModels, denoise
from predictors.text_to_multiview.task import PROMPT_SUFFIX, mvdream_prompt
from predictors.text_to_multiview.unet import MVDREAM_SCHEDULER_CONFIG

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


def test_inputs_defaults_and_validation():
    inputs = parse_inputs(TextToMultiviewInputs, {"prompt": " a red chair "}, "text-to-multiview")
    assert mvdream_prompt(inputs.prompt) == "a red chair" + PROMPT_SUFFIX
    assert (inputs.steps, inputs.guidance_scale, inputs.image_size) == (50, 7.5, 256)
    assert (inputs.elevation, inputs.azimuth_start, inputs.negative_prompt) == (15.0, 0.0, "")
    assert mvdream_prompt("a lamp, 3d asset") == "a lamp, 3d asset"
    with pytest.raises(ValueError, match=r"image_size must be one of 128, 192, 256"):
        parse_inputs(TextToMultiviewInputs, {"prompt": "x", "image_size": 200}, "text-to-multiview")
    with pytest.raises(ValueError, match="prompt"):
        parse_inputs(TextToMultiviewInputs, {"prompt": "  "}, "text-to-multiview")


def test_default_views_are_front_right_back_left_in_mvdreams_convention():
    # our azimuth 0 (front) is MVDream's 90 (its front faces +x)
    assert view_azimuths(NUM_VIEWS, 0.0 + FRONT_AZIMUTH) == [90.0, 180.0, 270.0, 360.0]


@pytest.mark.cuda
def test_tiny_run_in_half_precision_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from predictors.runtime import RunContext
    from predictors.text_to_multiview.task import load
    from testing.tiny import build_tiny_stacks

    build_tiny_stacks(tmp_path / "weights", ["mvdream-sd21", "sd21-base", "u2net"])
    device = torch.device("cuda")
    env = LoadEnv(tmp_path / "weights", device, Placement(device), BackgroundRemover(None))
    runner = load(env)
    env.placement.settle()
    assert runner.models.dtype == torch.float16
    inputs = parse_inputs(TextToMultiviewInputs, {"prompt": "a mug", "steps": 4, "image_size": 128}, "test")
    views = [runner.generate(inputs, RunContext(tmp_path, device, 5)).images["view_0.png"] for _ in range(2)]
    assert views[0].shape == (128, 128, 3)
    np.testing.assert_array_equal(views[0], views[1])
