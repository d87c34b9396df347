"""TRELLIS image-to-3d on CPU: per-stage time and peak memory of the tiny pipeline, and one full-size
sparse-structure-flow forward with random weights.

Figures (``name: value`` lines):
* ``tiny_<stage>_seconds`` for every stage of one ``image-to-3d`` run with the tiny random stack, exactly as the
  predictor runs it (preprocess, condition, sparse_structure, structured_latent, decode_mesh, texture, export);
  ``tiny_total_seconds`` and ``tiny_peak_rss_mb`` (peak resident memory of this process so far);
* ``ss_flow_params`` and ``ss_flow_forward_seconds`` for the official ``ss_flow_img_dit_L_16l8`` config (24
  blocks, 1024 channels, 4096 tokens, 1374 conditioning tokens), built with random weights (one forward: about
  5 TFLOP, i.e. close to a minute on 2 CPU cores);
* ``ss_flow_sdpa_ratio``: the forward with our attention against the same forward with PyTorch's math-only SDPA
  backend (ours / peer, lower is better), a measure of what the fused attention kernel buys on this machine;
* ``peak_rss_mb`` at the end.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictors.engine import Engine  # noqa: E402
from predictors.image_to_3d.trellis.models import build_model  # noqa: E402
from testing.tiny import build_tiny_stacks  # noqa: E402
from weights.manifest import load_manifest  # noqa: E402

EXAMPLE_IMAGE = ROOT / "examples" / "multiview" / "front.png"
KEYS_FIXTURE = ROOT / "tests" / "image_to_3d" / "trellis" / "fixtures" / "trellis_keys.json"
SS_FLOW_STEM = "ss_flow_img_dit_L_16l8_fp16"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tiny_pipeline() -> None:
    """The whole image-to-3d prediction with tiny weights, through the engine the server uses."""
    timings: dict[str, float] = {}

    def record(key: str, value: object) -> None:
        if key.startswith("timing."):
            timings[key.removeprefix("timing.")] = float(value)

    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "weights"
        build_tiny_stacks(weights, ["trellis-image-large", "dinov2-with-registers-large"])
        engine = Engine(weights, torch.device("cpu"))
        engine.setup(load_manifest(), serves=("image-to-3d",))
        out_dir = Path(folder) / "out"
        out_dir.mkdir()
        start = time.perf_counter()
        values = {"image": EXAMPLE_IMAGE, "video": False, "seed": 0}
        engine.predict("image-to-3d", values, out_dir, combined=False, record_metric=record)
        total = time.perf_counter() - start
    for stage, seconds in timings.items():
        print(f"tiny_{stage}_seconds: {seconds:.3f}", flush=True)
    print(f"tiny_total_seconds: {total:.3f}")
    print(f"tiny_peak_rss_mb: {peak_rss_mb():.0f}", flush=True)


def median_seconds(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def full_size_ss_flow() -> None:
    entry = json.loads(KEYS_FIXTURE.read_text())["models"][SS_FLOW_STEM]
    model = build_model(entry["name"], entry["args"]).eval()
    args = entry["args"]
    print(f"ss_flow_params: {sum(p.numel() for p in model.parameters())}", flush=True)
    resolution, channels = args["resolution"], args["in_channels"]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, resolution, resolution, resolution, generator=generator)
    cond = torch.randn(1, 1374, args["cond_channels"], generator=generator)
    t = torch.tensor([500.0])
    ours = median_seconds(lambda: model(x, t, cond), repeats=1)
    print(f"ss_flow_forward_seconds: {ours:.3f}", flush=True)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        peer = median_seconds(lambda: model(x, t, cond), repeats=1)
    print(f"ss_flow_math_sdpa_forward_seconds: {peer:.3f}")
    print(f"ss_flow_sdpa_ratio: {ours / peer:.3f}")


def main() -> None:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tiny_pipeline()
    full_size_ss_flow()
    print(f"peak_rss_mb: {peak_rss_mb():.0f}")


if __name__ == "__main__":
    main()
