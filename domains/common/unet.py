"""A compact U-Net ``F(x_in, c_noise, cond)`` over 1D or 2D grids (mel frames, mel spectrograms, rendered views).

Residual blocks modulated by the noise embedding (FiLM scale and shift), self-attention at chosen levels, and
conditioning on a class label and/or a vector embedding (e.g. a sentence embedding), both summed into the FiLM input;
optionally cross-attention to a sequence of token states (``cond["tokens"]`` [B, T, D] with ``cond["token_mask"]``
[B, T], True where a token is real), as latent diffusion conditions on text, and a patch stem that folds ``patch`` x
``patch`` pixels into channels so a larger image costs what a smaller one does (Hoogeboom et al. 2023).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polydiff.core.control import add_hint

from .embeddings import LabelEmbedding, NoiseEmbedding


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels // 4) or 1, channels)


def _conv(dims: int) -> type[nn.Module]:
    if dims not in (1, 2):
        raise ValueError(f"the U-Net works on 1D or 2D grids; got dims={dims}")
    return nn.Conv1d if dims == 1 else nn.Conv2d


class ResBlock(nn.Module):
    """Two size-3 convolutions with a FiLM modulation from the embedding between them."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, dims: int = 2) -> None:
        super().__init__()
        conv = _conv(dims)
        self.norm1, self.conv1 = _norm(c_in), conv(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), conv(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        film = self.film(emb)
        scale, shift = film.reshape(*film.shape, *[1] * (x.ndim - 2)).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all grid positions."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class CrossAttention(nn.Module):
    """Multi-head attention from every grid position to a token sequence, with a learnt null token always present.

    The null token makes an empty condition well defined: a row whose mask is all False (the null prompt of
    classifier-free guidance) attends to the null token alone. The output projection starts at zero, so a new block
    leaves the network unchanged.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.context_norm = nn.LayerNorm(context_dim)
        self.null = nn.Parameter(torch.zeros(1, 1, context_dim))
        self.attn = nn.MultiheadAttention(channels, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        b = x.shape[0]
        null = self.null.to(x.dtype).expand(b, 1, -1)
        if tokens is None:
            context, ignore = null, torch.zeros(b, 1, dtype=torch.bool, device=x.device)
        else:
            keep = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
            context = torch.cat([null, tokens.to(x.dtype)], dim=1)
            ignore = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=x.device), ~keep], dim=1)
        context = self.context_norm(context)
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, context, context, key_padding_mask=ignore, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class UNet(nn.Module):
    """U-Net over [B, C, L] (``dims=1``) or [B, C, H, W] (``dims=2``); every grid side divisible by 2 ** (levels - 1).

    Controllable (``polydiff.core.control``): its residual features are the skip features (the stem's output and
    each down-path block's) and the middle block's output, channels-first; ``forward(..., residuals)`` adds them to
    the skips as the decoder reads them and to the middle output, as ControlNet does; ``control_branch`` is the
    encoder half (stem, down path, middle). With ``patch`` > 1 (2D only) the features are those of the folded grid.
    """

    feature_axis = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        base: int = 64,
        mults: Sequence[int] = (1, 2, 2),
        num_res: int = 2,
        attn_levels: Sequence[int] = (2,),
        cond_dim: int = 0,
        num_classes: int = 0,
        dropout: float = 0.0,
        dims: int = 2,
        context_dim: int = 0,
        patch: int = 1,
    ) -> None:
        super().__init__()
        conv = _conv(dims)
        if patch < 1 or (patch > 1 and dims != 2):
            raise ValueError(f"patch must be 1, or a power of two > 1 on 2D grids; got patch={patch}, dims={dims}")
        self.dims, self.patch = dims, patch
        self.levels = len(mults)
        emb_dim = 4 * base
        self.noise_emb = NoiseEmbedding(emb_dim)
        self.label_emb = LabelEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.cond_proj = nn.Linear(cond_dim, emb_dim) if cond_dim > 0 else None
        self.stem = conv(in_channels * patch ** 2, base, 3, padding=1)

        def attention(channels: int) -> list[nn.Module]:
            return [SelfAttention(channels)] + ([CrossAttention(channels, context_dim)] if context_dim > 0 else [])

        self.down = nn.ModuleList()
        skips, ch = [base], base
        for level, mult in enumerate(mults):
            for _ in range(num_res):
                block = nn.ModuleList([ResBlock(ch, base * mult, emb_dim, dropout, dims)])
                ch = base * mult
                if level in attn_levels:
                    block.extend(attention(ch))
                self.down.append(block)
                skips.append(ch)
            if level < self.levels - 1:
                self.down.append(nn.ModuleList([conv(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)

        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout, dims), *attention(ch),
                                  ResBlock(ch, ch, emb_dim, dropout, dims)])
        self._feature_channels = [*skips, ch]

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(num_res + 1):
                block = nn.ModuleList([ResBlock(ch + skips.pop(), base * mult, emb_dim, dropout, dims)])
                ch = base * mult
                if level in attn_levels:
                    block.extend(attention(ch))
                self.up.append(block)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), conv(ch, ch, 3, padding=1)]))

        out = (out_channels or in_channels) * patch ** 2
        self.head = nn.Sequential(_norm(ch), nn.SiLU(), conv(ch, out, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def _embedding(self, c_noise: torch.Tensor, cond: dict | None, batch: int) -> torch.Tensor:
        emb = self.noise_emb(c_noise.reshape(-1).expand(batch))
        cond = cond or {}
        if self.label_emb is not None and cond.get("label") is not None:
            emb = emb + self.label_emb(cond["label"])
        if self.cond_proj is not None and cond.get("embedding") is not None:
            emb = emb + self.cond_proj(cond["embedding"].to(emb.dtype))
        return F.silu(emb)

    def _check(self, x: torch.Tensor) -> None:
        factor = 2 ** (self.levels - 1) * self.patch
        if x.ndim != self.dims + 2 or any(side % factor for side in x.shape[2:]):
            layout = "[B, C, L]" if self.dims == 1 else "[B, C, H, W]"
            raise ValueError(f"this U-Net needs {layout} with every side divisible by {factor}; got {tuple(x.shape)}")

    @staticmethod
    def _layer(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor, cond: dict) -> torch.Tensor:
        if isinstance(layer, ResBlock):
            return layer(h, emb)
        if isinstance(layer, CrossAttention):
            return layer(h, cond.get("tokens"), cond.get("token_mask"))
        return layer(h)

    def _encode(self, x: torch.Tensor, emb: torch.Tensor, cond: dict | None,
                hint: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The skip features of the down path and the middle block's output."""
        cond = cond or {}
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        h = add_hint(self.stem(x), hint, self.feature_axis)
        hs = [h]
        for block in self.down:
            for layer in block:
                h = self._layer(layer, h, emb, cond)
            hs.append(h)
        for layer in self.mid:
            h = self._layer(layer, h, emb, cond)
        return hs, h

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict | None = None,
                residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Predict a tensor shaped like ``x`` from the noisy input, its noise level and the condition (``residuals``:
        control features added to the skips and the middle output, see the class docstring)."""
        self._check(x)
        emb = self._embedding(c_noise, cond, x.shape[0])
        hs, h = self._encode(x, emb, cond)
        if residuals is not None:
            hs = [s + r for s, r in zip(hs, residuals[:-1])]
            h = h + residuals[-1]
        for block in self.up:
            if isinstance(block[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            for layer in block:
                h = self._layer(layer, h, emb, cond or {})
        out = self.head(h)
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out

    def feature_channels(self) -> list[int]:
        """Channels of each residual feature (the control protocol)."""
        return list(self._feature_channels)

    def features(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict | None = None,
                 hint: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The skip features (the stem's output plus ``hint`` first) and the middle output (the control protocol)."""
        self._check(x)
        hs, h = self._encode(x, self._embedding(c_noise, cond, x.shape[0]), cond, hint)
        return [*hs, h]

    def control_branch(self) -> "UNet":
        """A copy of the encoder half (the decoder and head removed), the trainable branch of a ControlNet."""
        branch = copy.deepcopy(self)
        branch.up, branch.head = nn.ModuleList(), nn.Identity()
        return branch
