"""A permutation-equivariant set network for point-cloud diffusion: ``F(x_in [B, N, 3], c_noise [B], cond) -> [B, N, 3]``.

Design: a set transformer with induced points (ISAB, Lee et al. 2019) in the Perceiver style. Every block lets
M learned latent vectors read all N points (cross-attention), mixes the latents with self-attention, then lets every
point read the latents back, followed by a point-wise MLP. The cost is O(N M) per block, linear in the number of points,
so 2048-point clouds fit on a CPU. There is no positional encoding over the point index, so the network is exactly
permutation-equivariant: permuting the input points permutes the output. Points enter through random Fourier
features of their coordinates (high-frequency detail for an MLP); the noise level and the class label (with a null
class for classifier-free guidance) modulate every block through adaptive layer norm (scale, shift and a gate, DiT).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from polydiff.core.control import add_hint
from polydiff.domains.common.embeddings import LabelEmbedding, NoiseEmbedding

Tensor = torch.Tensor


class _AdaLN(nn.Module):
    """Layer norm whose scale and shift come from the conditioning vector; also returns a residual gate."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.proj = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        scale, shift, gate = self.proj(c)[:, None].chunk(3, dim=-1)
        return self.norm(h) * (1 + scale) + shift, gate


class _Attention(nn.Module):
    """Multi-head attention of queries ``x`` [B, L, D] over a context [B, S, D] (scaled dot product, no masks)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    """Induced set attention: latents <- points, latents <- latents, points <- latents, then a point-wise MLP."""

    def __init__(self, dim: int, cond_dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm_read = _AdaLN(dim, cond_dim)
        self.norm_lat = nn.LayerNorm(dim)
        self.read = _Attention(dim, heads)
        self.norm_self = nn.LayerNorm(dim)
        self.mix = _Attention(dim, heads)
        self.norm_write = _AdaLN(dim, cond_dim)
        self.write = _Attention(dim, heads)
        self.norm_mlp = _AdaLN(dim, cond_dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, h: Tensor, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        hn, _ = self.norm_read(h, c)
        zn = self.norm_lat(z)
        z = z + self.read(zn, hn)
        zn = self.norm_self(z)
        z = z + self.mix(zn, zn)
        hn, gate = self.norm_write(h, c)
        h = h + gate * self.write(hn, z)
        hn, gate = self.norm_mlp(h, c)
        return h + gate * self.mlp(hn), z


class PointSetTransformer(nn.Module):
    """The point denoiser network; ``cond`` is None or a dict with an optional ``"label"`` LongTensor [B].

    ``num_classes = 0`` gives an unconditional network; otherwise label ``num_classes`` or any negative label
    (``NULL_LABEL``) is the null class, and a ``None`` cond means all-null.

    Controllable (``polydiff.core.control``): its residual features are the per-point states [B, N, dim] after the
    input embedding and after each block (channels-last); ``forward(..., residuals)`` adds residual i to state i.
    """

    feature_axis = -1

    def __init__(self, dim: int = 128, depth: int = 4, latents: int = 32, heads: int = 4, num_classes: int = 0,
                 mlp_ratio: int = 2, fourier: int = 32, fourier_scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.config = {"dim": dim, "depth": depth, "latents": latents, "heads": heads, "num_classes": num_classes,
                       "mlp_ratio": mlp_ratio, "fourier": fourier, "fourier_scale": fourier_scale, "seed": seed}
        self.num_classes = num_classes
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(3, fourier, generator=gen) * fourier_scale)
        self.embed_in = nn.Sequential(nn.Linear(3 + 2 * fourier, dim), nn.GELU(), nn.Linear(dim, dim))
        self.noise = NoiseEmbedding(dim)
        self.label = LabelEmbedding(num_classes, dim) if num_classes > 0 else None
        self.latents = nn.Parameter(torch.randn(latents, dim, generator=gen) / math.sqrt(dim))
        self.blocks = nn.ModuleList(_Block(dim, dim, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = _AdaLN(dim, dim)
        self.out = nn.Linear(dim, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _cond_vector(self, c_noise: Tensor, cond: Any, batch: int) -> Tensor:
        c = self.noise(c_noise)
        if self.label is not None:
            labels = None if cond is None else cond.get("label")
            if labels is None:
                labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=c.device)
            labels = torch.as_tensor(labels, device=c.device).long()
            if labels.shape != (batch,) or int(labels.max()) > self.num_classes:
                raise ValueError(f"cond['label'] must be {batch} class indices in [0, {self.num_classes - 1}] "
                                 f"(or {self.num_classes} / a negative label for the null class)")
            c = c + self.label(labels)
        return nn.functional.silu(c)

    def _check(self, x_in: Tensor, c_noise: Tensor) -> None:
        if x_in.ndim != 3 or x_in.shape[-1] != 3:
            raise ValueError(f"points must have shape [B, N, 3], got {tuple(x_in.shape)}")
        if c_noise.shape != (x_in.shape[0],):
            raise ValueError(f"c_noise must have shape [{x_in.shape[0]}], got {tuple(c_noise.shape)}")

    def _embed(self, x_in: Tensor) -> Tensor:
        angles = 2 * math.pi * x_in @ self.freqs
        return self.embed_in(torch.cat([x_in, angles.sin(), angles.cos()], dim=-1))

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None, residuals: list[Tensor] | None = None) -> Tensor:
        """Predict a [B, N, 3] output from noisy points [B, N, 3] and their noise features c_noise [B] (``residuals``:
        control features added to the point states, see the class docstring)."""
        self._check(x_in, c_noise)
        c = self._cond_vector(c_noise, cond, x_in.shape[0])
        h = self._embed(x_in)
        if residuals is not None:
            h = h + residuals[0]
        z = self.latents[None].expand(x_in.shape[0], -1, -1)
        for i, block in enumerate(self.blocks):
            h, z = block(h, z, c)
            if residuals is not None:
                h = h + residuals[i + 1]
        hn, _ = self.norm_out(h, c)
        return self.out(hn)

    def feature_channels(self) -> list[int]:
        """Channels of each residual feature (the control protocol)."""
        return [self.config["dim"]] * (len(self.blocks) + 1)

    def features(self, x_in: Tensor, c_noise: Tensor, cond: Any = None, hint: Tensor | None = None) -> list[Tensor]:
        """The point states after the input embedding (plus ``hint``) and after each block (the control protocol)."""
        self._check(x_in, c_noise)
        c = self._cond_vector(c_noise, cond, x_in.shape[0])
        h = add_hint(self._embed(x_in), hint, self.feature_axis)
        z = self.latents[None].expand(x_in.shape[0], -1, -1)
        out = [h]
        for block in self.blocks:
            h, z = block(h, z, c)
            out.append(h)
        return out
