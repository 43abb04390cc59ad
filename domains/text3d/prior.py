"""The text-conditioned 2D prior: the shared ``UNet`` over renders, conditioned on MiniLM caption embeddings.

Training data are the labelled multi-view renders of ``data``; the condition is ``{"embedding": [B, 384]}`` (the pooled
sentence embedding, FiLM) plus ``"tokens"`` [B, T, 384] and ``"token_mask"`` [B, T] (the token states a prior with
``tokens=True`` cross-attends to; others ignore them). The null condition of classifier-free guidance is the zero
embedding and no tokens. Prompts are made view-dependent the DreamFusion way, "<prompt>, <view> view", from each
camera's elevation and azimuth.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from polydiff.core.noise import draw_device
from polydiff.domains.common.unet import UNet

from .cameras import Cameras, view_name
from .data import RenderSetConfig, captions_of, load_render_set, to_model_range
from .text import EMBED_DIM, encode, encode_tokens

Tensor = torch.Tensor


def build_prior_network(size: int = 32, base: int = 32, mults: Sequence[int] = (1, 2, 2), num_res: int = 1,
                        attn_levels: Sequence[int] = (2,), dropout: float = 0.0, tokens: bool = False,
                        patch: int = 1) -> UNet:
    """The prior's network F(x_in, c_noise, cond) on [B, 3, size, size] renders; ``tokens``: cross-attention to the
    caption's token states at the attention levels; ``patch``: pixels folded into channels per side."""
    factor = 2 ** (len(mults) - 1) * patch
    if size % factor:
        raise ValueError(f"image size {size} must be divisible by {factor} for U-Net levels {tuple(mults)} and "
                         f"patch {patch}")
    return UNet(3, 3, base=base, mults=tuple(mults), num_res=num_res, attn_levels=tuple(attn_levels),
                cond_dim=EMBED_DIM, dropout=dropout, context_dim=EMBED_DIM if tokens else 0, patch=patch)


class RenderDataset(torch.utils.data.Dataset):
    """Renders in [-1, 1] with their caption's condition; items are (image [3, S, S], caption index), the captions'
    pooled embeddings and token states (padded to the longest caption) held once in tables."""

    def __init__(self, cfg: RenderSetConfig, progress: bool = False) -> None:
        data = load_render_set(cfg, progress=progress)
        self.images = to_model_range(data["images"])
        self.labels = {k: data[k] for k in ("shape", "color", "view", "attribute") if k in data}
        caps = captions_of(data)
        unique = sorted(set(caps))
        index = {c: i for i, c in enumerate(unique)}
        self.caption_index = torch.tensor([index[c] for c in caps])
        self.table = {"embedding": encode(unique)}
        self.table["tokens"], self.table["token_mask"] = encode_tokens(unique)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        c = int(self.caption_index[i])
        return self.images[i], {k: v[c] for k, v in self.table.items()}


def collate_renders(items: list[tuple[Tensor, dict[str, Tensor]]]):
    """Stack (image, condition) items into a ``Batch`` whose cond has ``embedding``, ``tokens`` and ``token_mask``."""
    from polydiff.plugins.domain import Batch

    return Batch(torch.stack([a for a, _ in items]), {k: torch.stack([c[k] for _, c in items]) for k in items[0][1]})


def drop_embeddings(cond: dict[str, Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Replace each row's condition by the null condition (zero embedding, no tokens) with probability ``p``."""
    e = cond["embedding"]
    keep = (torch.rand(e.shape[0], generator=generator, device=draw_device(generator, e.device)) >= p).to(e.device)
    out = {**cond, "embedding": e * keep[:, None].to(e.dtype)}
    if "token_mask" in cond:
        out["token_mask"] = cond["token_mask"] & keep[:, None]
        out["tokens"] = cond["tokens"] * keep[:, None, None].to(cond["tokens"].dtype)
    return out


def null_condition(cond: dict[str, Tensor]) -> dict[str, Tensor]:
    """The unconditional version of a condition: zero embeddings and no tokens (same shapes, so it stacks)."""
    out = {**cond, "embedding": torch.zeros_like(cond["embedding"])}
    if "token_mask" in cond:
        out["tokens"], out["token_mask"] = torch.zeros_like(cond["tokens"]), torch.zeros_like(cond["token_mask"])
    return out


def view_prompts(prompt: str, cams: Cameras) -> list[str]:
    """One view-dependent prompt per camera: "<prompt>, front view" etc."""
    prompt = prompt.strip().rstrip(".")
    if not prompt:
        raise ValueError("the prompt is empty; describe the object, e.g. 'a red mug'")
    return [f"{prompt}, {view_name(float(e), float(a))} view" for e, a in zip(cams.elevation, cams.azimuth)]


def prompt_condition(prompt: str, cams: Cameras, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The prior's condition for renders of ``cams``: the embeddings and token states of the view-dependent prompts."""
    prompts = view_prompts(prompt, cams)
    tokens, mask = encode_tokens(prompts)
    return {"embedding": encode(prompts).to(device), "tokens": tokens.to(device), "token_mask": mask.to(device)}
