"""Foreground masks of the generated views, for RGBA outputs and reconstruction.

With ``u2net.onnx`` installed (optional stack ``u2net``: rembg's U^2-Net salient-object model), each view goes
through it with rembg's pre- and post-processing: resize to 320 x 320, scale by the image maximum, normalise with
the ImageNet mean and standard deviation, take the first output, min-max normalise it and resize it back; that is
the alpha, and alpha > 0.5 the mask. Without it, MVDream's plain (usually white) background is separated by
colour: ``predictors.geometry.masks.background_mask``. The log says which was used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from predictors.geometry.masks import background_mask

U2NET_FILE = "u2net.onnx"
U2NET_SIZE = 320
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MAX_COVERAGE = 0.95  # a mask this full means the background was not found


class BackgroundRemover:
    """Alpha mattes of views on a plain background: U^2-Net through onnxruntime when installed, else by colour."""

    def __init__(self, model_path: Path | None = None) -> None:
        self._session = None
        if model_path is not None and model_path.is_file():
            import onnxruntime

            providers = [
                provider
                for provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
                if provider in onnxruntime.get_available_providers()
            ]
            self._session = onnxruntime.InferenceSession(str(model_path), providers=providers)

    @property
    def method(self) -> str:
        return "u2net" if self._session is not None else "plain-background colour"

    def alphas(self, images: np.ndarray) -> np.ndarray:
        """Alpha [N, H, W] float32 in [0, 1] of views [N, H, W, 3] float in [0, 1].

        Raises:
            ValueError: a view's foreground is empty or fills the image (the object could not be separated).
        """
        if self._session is not None:
            alphas = np.stack([self._u2net_alpha(image) for image in images])
        else:
            alphas = np.stack(
                [background_mask(image, f"view {index}") for index, image in enumerate(images)]
            ).astype(np.float32)
        for index, alpha in enumerate(alphas):
            coverage = float((alpha > 0.5).mean())
            if coverage == 0.0 or coverage >= MAX_COVERAGE:
                raise ValueError(
                    f"view {index}: could not separate the object from the background (foreground covers "
                    f"{coverage:.0%} of the image); try another seed or prompt"
                )
        return alphas

    def _u2net_alpha(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        pixels = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")
        resized = np.asarray(
            pixels.resize((U2NET_SIZE, U2NET_SIZE), Image.Resampling.LANCZOS), dtype=np.float32
        )
        resized = resized / max(float(resized.max()), 1e-6)
        normalised = ((resized - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
        input_name = self._session.get_inputs()[0].name
        prediction = self._session.run(None, {input_name: normalised})[0][0, 0]
        low, high = float(prediction.min()), float(prediction.max())
        prediction = (prediction - low) / max(high - low, 1e-6)
        matte = Image.fromarray(np.round(prediction * 255.0).astype(np.uint8), mode="L")
        return np.asarray(matte.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
