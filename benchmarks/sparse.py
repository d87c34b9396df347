"""Benchmark: our pure-PyTorch submanifold conv vs spconv 2.x (CPU build) on TRELLIS-sized layers.

The voxels are a closed surface at resolution 64 (a bumpy sphere shell, about 20k voxels), like the
structured latents TRELLIS convolves. Layers: 1024 -> 1024 (``input_blocks.1.conv2`` of the SLat flow) and
2048 -> 128 (``out_blocks.0.conv1``), 3x3x3, float32. Both convs reuse their neighbour maps (spconv through
an ``indice_key``), so the figures compare the convolutions themselves; map building is printed apart.

spconv's CPU kernels are not thread-safe, so it runs on one thread, and ``ratio`` (ours / spconv for the
1024 -> 1024 layer, lower is better) compares at one thread each; ``ratio_2048_128`` likewise. Ours with
``BENCH_THREADS`` threads is printed as well. Also printed: windowed self-attention time for the same
voxels (window 8, 12 heads of 64, mean of shift 0 and shift 4), as in TRELLIS's SLat decoders.

Prints ``name: value`` lines.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extensions.sparse import SparseConv3d, SparseTensor, sparse_windowed_scaled_dot_product_self_attention
from extensions.sparse.kernel_map import build_kernel_map

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
RESOLUTION = 64
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def surface_voxels(resolution: int = RESOLUTION) -> torch.Tensor:
    """int32 ``[N, 4]`` voxels within one voxel of a bumpy sphere's surface, in (batch, x, y, z) order."""
    axis = torch.arange(resolution, dtype=torch.float32) + 0.5 - resolution / 2
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    radius = torch.sqrt(x * x + y * y + z * z).clamp_min(1e-6)
    bumps = 1 + 0.06 * torch.sin(5 * x / radius) * torch.sin(4 * y / radius) * torch.cos(3 * z / radius)
    shell = (radius - 0.44 * resolution * bumps).abs() <= 1.0
    coords = torch.argwhere(shell).int()
    return torch.cat([torch.zeros_like(coords[:, :1]), coords], dim=1).contiguous()


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_best(runs: dict[str, Callable[[], object]], repeats: int = REPEATS) -> dict[str, float]:
    """Best time of each run after a warm-up, alternating between runs so that load changes hit all alike."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(seconds(fn))
    return {name: min(values) for name, values in times.items()}


def compare_conv(coords: torch.Tensor, ci: int, co: int) -> tuple[dict[str, float], float]:
    """Best seconds of ours (1 and THREADS threads) and spconv (1 thread), and max |ours - spconv|."""
    import spconv.pytorch as spconv

    g = torch.Generator().manual_seed(ci + co)
    feats = torch.randn(coords.shape[0], ci, generator=g)
    ours = SparseConv3d(ci, co, 3)
    peer = spconv.SubMConv3d(ci, co, 3, bias=True, indice_key="bench").train()  # CPU eval rejects a bias
    peer.load_state_dict(ours.conv.state_dict())
    x = SparseTensor(feats, coords)
    peer_input = spconv.SparseConvTensor(feats, coords, [RESOLUTION] * 3, 1)

    def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            torch.set_num_threads(threads)
            return fn()

        return run

    with torch.no_grad():
        best = interleaved_best(
            {
                "spconv": with_threads(1, lambda: peer(peer_input)),
                "ours": with_threads(1, lambda: ours(x)),
                "ours_threads": with_threads(THREADS, lambda: ours(x)),
            }
        )
        torch.set_num_threads(1)
        difference = (ours(x).feats - peer(peer_input).features).abs().max().item()
    return best, difference


def windowed_attention_ms(
    coords: torch.Tensor, heads: int = 12, head_dim: int = 64, window: int = 8
) -> float:
    g = torch.Generator().manual_seed(0)
    qkv = SparseTensor(torch.randn(coords.shape[0], 3, heads, head_dim, generator=g), coords)
    with torch.no_grad():
        best = interleaved_best(
            {
                f"shift_{shift}": lambda s=shift: sparse_windowed_scaled_dot_product_self_attention(
                    qkv, window, s
                )
                for shift in (0, window // 2)
            }
        )
    return 1000 * statistics.mean(best.values())


def main() -> None:
    coords = surface_voxels()
    torch.set_num_threads(1)
    map_seconds = seconds(lambda: build_kernel_map(coords, 3))
    kernel_map = build_kernel_map(coords, 3)
    pairs = coords.shape[0] + sum(rows.numel() for _, rows, _ in kernel_map.pairs)
    print(f"voxels: {coords.shape[0]}")
    print(f"mean_active_offsets: {pairs / coords.shape[0]:.2f}")
    print(f"ours_map_build_ms: {1000 * map_seconds:.1f}")

    for ci, co in ((1024, 1024), (2048, 128)):
        label = f"{ci}_{co}"
        best, difference = compare_conv(coords, ci, co)
        print(f"ours_{label}_1thread_ms: {1000 * best['ours']:.0f}")
        print(f"ours_{label}_{THREADS}threads_ms: {1000 * best['ours_threads']:.0f}")
        print(f"spconv_{label}_1thread_ms: {1000 * best['spconv']:.0f}")
        print(f"max_abs_diff_{label}: {difference:.2e}")
        print(f"{'ratio' if ci == 1024 else 'ratio_' + label}: {best['ours'] / best['spconv']:.3f}")
        print(f"ratio_{label}_ours_{THREADS}threads: {best['ours_threads'] / best['spconv']:.3f}")

    torch.set_num_threads(THREADS)
    print(f"windowed_attention_{THREADS}threads_ms: {windowed_attention_ms(coords):.0f}")


if __name__ == "__main__":
    main()
