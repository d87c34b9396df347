"""Parameter-light building blocks shared by the TRELLIS models (names follow the official checkpoints)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ChannelLayerNorm32(LayerNorm32):
    """LayerNorm32 over the channel axis of a channel-first tensor ``[B, C, *spatial]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.movedim(1, -1)
        return super().forward(channels_last).movedim(-1, 1).contiguous()


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMS norm of queries/keys: ``normalize(x) * gamma[H, Dh] * sqrt(Dh)`` in float32."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(heads, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=-1) * self.gamma.float() * self.scale).to(x.dtype)


class TimestepEmbedder(nn.Module):
    """Sinusoidal timestep features (cos first, then sin) followed by a two-layer SiLU MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """``[N]`` (fractional) timesteps -> ``[N, dim]`` features ``[cos(t f), sin(t f)]``."""
        half = dim // 2
        exponents = torch.arange(half, dtype=torch.float32, device=t.device) / half
        angles = t.float()[:, None] * torch.exp(-math.log(max_period) * exponents)[None]
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        if dim % 2:
            features = F.pad(features, (0, 1))
        return features

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        weight = self.mlp[0].weight
        return self.mlp(self.sinusoid(t, self.frequency_embedding_size).to(weight.dtype))


def absolute_position_embedding(coords: torch.Tensor, channels: int) -> torch.Tensor:
    """Sin/cos features of integer positions ``[N, D]`` -> ``[N, channels]`` (float32).

    Each axis gets ``channels // D // 2`` frequencies laid out as ``[sin..., cos...]``, axes one after the
    other; the remaining channels (4 of 1024 for D=3) are zero.
    """
    num_axes = coords.shape[-1]
    freq_dim = channels // num_axes // 2
    freqs = 1.0 / (10000 ** (torch.arange(freq_dim, dtype=torch.float32, device=coords.device) / freq_dim))
    angles = coords.float()[..., None] * freqs
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(coords.shape[0], -1)
    return F.pad(embedding, (0, channels - embedding.shape[1]))


class FeedForwardNet(nn.Module):
    """``mlp.0`` Linear(C, rC) -> tanh-GELU -> ``mlp.2`` Linear(rC, C)."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, X, Y, Z]`` -> ``[B, C*p^3, X/p, Y/p, Z/p]``; channel ``c*p^3 + (i*p + j)*p + k`` holds offset (i,j,k)."""
    b, c, *size = x.shape
    p = patch_size
    grid = [s // p for s in size]
    x = x.reshape(b, c, grid[0], p, grid[1], p, grid[2], p)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * p**3, *grid)


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b, cp, *grid = x.shape
    p = patch_size
    c = cp // p**3
    x = x.reshape(b, c, p, p, p, *grid)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, *(g * p for g in grid))


def pixel_shuffle_3d(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B, C*s^3, X, Y, Z]`` -> ``[B, C, sX, sY, sZ]``; channel ``c*s^3 + (i*s + j)*s + k`` goes to offset (i,j,k)."""
    return unpatchify(x, scale)
