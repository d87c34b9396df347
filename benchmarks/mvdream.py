"""MVDream text-to-multiview: cost of one denoising step and of a whole tiny run, on the CPU.

Figures:
* ``step_multiview_seconds``: one DDIM step at 256 x 256 for one object of 4 views with full-size random
  weights (867.6M-parameter UNet, fp32): one UNet call on the guided batch [uncond x 4, cond x 4] with the
  multi-view self-attention processor, as the sampler runs it;
* ``step_plain_seconds``: the same call with diffusers' default per-view attention (plain SD2.1 behaviour);
* ``ratio`` = multiview / plain (lower is better): what the joint attention over 4 x 1024 tokens costs;
  each is the fastest of ``REPEATS`` alternating runs;
* ``tiny_end_to_end_seconds``: the task runner with the tiny stacks, 50 steps, 256 x 256, no 3D (load excluded);
* ``tiny_load_seconds``: loading the tiny stacks.
No GPU figures: no GPU was lent when this benchmark was written.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import contextlib
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictors.text_to_multiview.cameras import camera_vectors, view_azimuths
from predictors.text_to_multiview.unet import MVDREAM_UNET_CONFIG, MultiViewUNet, build_unet

VIEWS = 4
LATENT_SIDE = 256 // 8
REPEATS = 2


def _step_seconds(model: MultiViewUNet) -> float:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2 * VIEWS, 4, LATENT_SIDE, LATENT_SIDE, generator=generator)
    context = torch.randn(2 * VIEWS, 77, 1024, generator=generator)
    cameras = camera_vectors(view_azimuths(VIEWS, 90.0), 15.0).repeat(2, 1)
    with torch.no_grad():
        start = time.perf_counter()
        model(latents, torch.tensor(501), context, cameras, num_views=VIEWS)
        return time.perf_counter() - start


def _tiny_end_to_end() -> tuple[float, float]:
    """Setup and one text-to-multiview prediction with tiny weights, through the engine the server uses."""
    from predictors.engine import Engine
    from testing.tiny import build_tiny_stacks
    from weights.manifest import load_manifest

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        build_tiny_stacks(root / "weights", ["mvdream-sd21", "sd21-base"])
        (root / "out").mkdir()
        with contextlib.redirect_stdout(sys.stderr):  # the engine's logs; stdout keeps the figures
            start = time.perf_counter()
            engine = Engine(root / "weights", torch.device("cpu"))
            engine.setup(load_manifest(), serves=("text-to-multiview",))
            loaded = time.perf_counter()
            values = {"prompt": "a wooden chair", "seed": 1}
            engine.predict(
                "text-to-multiview",
                values,
                root / "out",
                combined=False,
                record_metric=lambda key, value: None,
            )
            return loaded - start, time.perf_counter() - loaded


def main() -> int:
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.manual_seed(0)
    unet = build_unet(MVDREAM_UNET_CONFIG).eval()
    _step_seconds(MultiViewUNet(unet, multiview=False))  # warm-up
    plain, multiview = [], []
    for _ in range(REPEATS):  # alternate, keep the fastest of each: other processes share these cores
        unet.set_attn_processor(AttnProcessor2_0())  # diffusers' default (per-view) SDPA attention
        plain.append(_step_seconds(MultiViewUNet(unet, multiview=False)))
        multiview.append(
            _step_seconds(MultiViewUNet(unet))
        )  # the same weights, multi-view processor on attn1
    del unet
    load_seconds, run_seconds = _tiny_end_to_end()
    print(f"step_multiview_seconds: {min(multiview):.2f}")
    print(f"step_plain_seconds: {min(plain):.2f}")
    print(f"ratio: {min(multiview) / min(plain):.3f}")
    print(f"tiny_load_seconds: {load_seconds:.2f}")
    print(f"tiny_end_to_end_seconds: {run_seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
