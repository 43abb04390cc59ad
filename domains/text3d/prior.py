"""The text-conditioned 2D prior: the shared ``UNet`` over renders, conditioned on MiniLM caption embeddings.

Training data are the labelled multi-view renders of ``data``; the condition is ``{"embedding": [B, 384]}`` and the
null condition of classifier-free guidance is the zero embedding. Prompts are made view-dependent the DreamFusion way,
"<prompt>, <view> view", from each camera's elevation and azimuth.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from polydiff.core.noise import draw_device
from polydiff.domains.common.unet import UNet

from .cameras import Cameras, view_name
from .data import RenderSetConfig, captions_of, load_render_set, to_model_range
from .text import EMBED_DIM, encode

Tensor = torch.Tensor


def build_prior_network(size: int = 32, base: int = 32, mults: Sequence[int] = (1, 2, 2), num_res: int = 1,
                        attn_levels: Sequence[int] = (2,), dropout: float = 0.0) -> UNet:
    """The prior's network F(x_in, c_noise, {"embedding": e}) on [B, 3, size, size] renders."""
    factor = 2 ** (len(mults) - 1)
    if size % factor:
        raise ValueError(f"image size {size} must be divisible by {factor} for U-Net levels {tuple(mults)}")
    return UNet(3, 3, base=base, mults=tuple(mults), num_res=num_res, attn_levels=tuple(attn_levels),
                  cond_dim=EMBED_DIM, dropout=dropout)


class RenderDataset(torch.utils.data.Dataset):
    """Renders in [-1, 1] with the embedding of their caption; items are (image [3, S, S], embedding [384])."""

    def __init__(self, cfg: RenderSetConfig, progress: bool = False) -> None:
        data = load_render_set(cfg, progress=progress)
        self.images = to_model_range(data["images"])
        self.labels = {k: data[k] for k in ("shape", "color", "view")}
        caps = captions_of(data)
        unique = sorted(set(caps))
        table = encode(unique)
        index = {c: i for i, c in enumerate(unique)}
        self.embeddings = table[torch.tensor([index[c] for c in caps])]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.embeddings[i]


def collate_renders(items: list[tuple[Tensor, Tensor]]):
    """Stack (image, embedding) items into a ``Batch`` with ``cond={"embedding": ...}``."""
    from polydiff.plugins.domain import Batch

    return Batch(torch.stack([a for a, _ in items]), {"embedding": torch.stack([b for _, b in items])})


def drop_embeddings(cond: dict[str, Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Replace each row's embedding by the null (zero) embedding with probability ``p`` (CFG training)."""
    e = cond["embedding"]
    keep = (torch.rand(e.shape[0], generator=generator, device=draw_device(generator, e.device)) >= p).to(e.device)
    return {**cond, "embedding": e * keep[:, None].to(e.dtype)}


def null_condition(cond: dict[str, Tensor]) -> dict[str, Tensor]:
    """The unconditional version of a condition: zero embeddings."""
    return {**cond, "embedding": torch.zeros_like(cond["embedding"])}


def view_prompts(prompt: str, cams: Cameras) -> list[str]:
    """One view-dependent prompt per camera: "<prompt>, front view" etc."""
    prompt = prompt.strip().rstrip(".")
    if not prompt:
        raise ValueError("the prompt is empty; describe the object, e.g. 'a red mug'")
    return [f"{prompt}, {view_name(float(e), float(a))} view" for e, a in zip(cams.elevation, cams.azimuth)]


def prompt_condition(prompt: str, cams: Cameras, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The prior's condition for renders of ``cams``: the embeddings of the view-dependent prompts."""
    return {"embedding": encode(view_prompts(prompt, cams)).to(device)}
