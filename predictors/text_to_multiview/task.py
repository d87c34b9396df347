"""The ``text-to-multiview`` task: prompt -> four consistent views with MVDream.

Result, in order: ``views.png`` (2x2 grid, row-major view 0..3), ``view_0.png`` .. ``view_3.png`` (RGB) and
``cameras.json`` (each view's MVDream azimuth, elevation and 16-float camera vector, in MVDream's own
convention). For composition, ``extras`` holds the views as floats [4, H, W, 3] in [0, 1] and their
perspective ``cameras`` in our world convention (``predictors.geometry.cameras``), ready for reconstruction.
With the default ``azimuth_start`` (0°) the views are front, right, back, left (see ``cameras.py``).
"""

from __future__ import annotations

import numpy as np

from predictors.diffusion.prompts import encode_prompts
from predictors.geometry.preview import image_grid
from predictors.outputs import TaskResult
from predictors.runtime import LoadEnv, RunContext, log
from predictors.text_to_multiview.cameras import (
    FRONT_AZIMUTH,
    NUM_VIEWS,
    camera_vectors,
    reconstruction_cameras,
    view_azimuths,
)
from predictors.text_to_multiview.inputs import TextToMultiviewInputs
from predictors.text_to_multiview.pipeline import MVDreamModels, decode, denoise, initial_latents, load_models

MVDREAM_STACK, SD21_STACK = "mvdream-sd21", "sd21-base"
PROMPT_SUFFIX = ", 3d asset"  # appended as by MVDream's scripts/t2i.py
CAMERAS_CONVENTION = "MVDream: camera-to-world 4x4, Blender z-up world, row-major, unit distance"


def mvdream_prompt(prompt: str) -> str:
    """The prompt MVDream samples with: stripped, with ", 3d asset" appended unless it is there."""
    prompt = prompt.strip()
    return prompt if prompt.endswith(PROMPT_SUFFIX) else prompt + PROMPT_SUFFIX


class TextToMultiview:
    """MVDream views from a prompt."""

    def __init__(self, models: MVDreamModels, env: LoadEnv) -> None:
        self.models = models
        self.placement = env.placement

    def generate(self, inputs: TextToMultiviewInputs, context: RunContext) -> TaskResult:
        prompt = mvdream_prompt(inputs.prompt)
        log(
            f"prompt: {prompt!r}; {inputs.steps} steps, guidance {inputs.guidance_scale}, "
            f"elevation {inputs.elevation}°, azimuth start {inputs.azimuth_start}°, {inputs.image_size} px"
        )
        azimuths = view_azimuths(NUM_VIEWS, inputs.azimuth_start + FRONT_AZIMUTH)
        with self.placement.on_device(self.models.modules):
            images = self._sample(inputs, prompt, azimuths, context)
        rgb = np.round(images * 255.0).astype(np.uint8)
        vectors = camera_vectors(azimuths, inputs.elevation)
        cameras = {
            "convention": CAMERAS_CONVENTION,
            "views": [
                {
                    "file": f"view_{index}.png",
                    "azimuth": azimuth,
                    "elevation": inputs.elevation,
                    "camera": [round(float(value), 7) for value in vectors[index]],
                }
                for index, azimuth in enumerate(azimuths)
            ],
        }
        return TaskResult(
            images={
                "views.png": image_grid(list(rgb), columns=2),
                **{f"view_{index}.png": view for index, view in enumerate(rgb)},
            },
            documents={"cameras.json": cameras},
            extras={"views": images, "cameras": reconstruction_cameras(azimuths, inputs.elevation)},
        )

    def _sample(
        self, inputs: TextToMultiviewInputs, prompt: str, azimuths: list[float], context: RunContext
    ) -> np.ndarray:
        models = self.models
        with context.stage("encode"):
            text = encode_prompts(
                models.tokenizer, models.text_encoder, [inputs.negative_prompt, prompt], models.device
            )
        latents = initial_latents(models, len(azimuths), inputs.image_size, context.generator())
        with context.stage("denoise"):
            latents = denoise(
                models,
                latents,
                text,
                camera_vectors(azimuths, inputs.elevation),
                steps=inputs.steps,
                guidance_scale=inputs.guidance_scale,
            )
        with context.stage("decode"):
            return decode(models, latents)


def load(env: LoadEnv) -> TextToMultiview:
    """The two MVDream stacks, on the CPU until placement settles."""
    models = load_models(env.weights_dir / MVDREAM_STACK, env.weights_dir / SD21_STACK, env.device)
    env.placement.register("text-to-multiview", models.modules)
    return TextToMultiview(models, env)
