"""R-precision in the spirit of CLIP R-precision, with a classifier trained on renders of the procedural set.

A small CNN with two heads (colour and shape) scores renders of a generated object from fixed views; the top-1
precision over a fixed prompt list is reported for colour and for shape, next to the same numbers on renders of
held-out ground-truth shapes (the ceiling) and of an untrained field (the floor). The classifier is cached as
safetensors + JSON under ``$POLYDIFF_CACHE/text3d``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cameras import orbit_cameras
from .data import BACKGROUND, COLOR_NAMES, COLORS, RenderSetConfig, load_render_set, normalise_mesh, shape_classes, shape_field, voxelise
from .render import default_light, render
from .text import cache_dir

Tensor = torch.Tensor

DEFAULT_PROMPTS: tuple[tuple[str, str], ...] = (
    ("red", "mug"), ("blue", "chair"), ("green", "table"), ("yellow", "lamp"),
    ("purple", "bottle"), ("orange", "airplane"), ("blue", "shelf"),
)


class ShapeColorClassifier(nn.Module):
    """A four-stage CNN over [B, 3, S, S] renders in [0, 1] with a colour head and a shape head."""

    def __init__(self, n_colors: int, n_shapes: int, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(8, b), nn.SiLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.color_head = nn.Linear(chans[-1], n_colors)
        self.shape_head = nn.Linear(chans[-1], n_shapes)
        self.n_colors, self.n_shapes, self.width = n_colors, n_shapes, width

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Colour and shape logits of images in [0, 1]."""
        h = self.features(images * 2 - 1).mean(dim=(2, 3))
        return self.color_head(h), self.shape_head(h)


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random flips and small shifts (the classifier should not key on exact pixel positions)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_classifier(images: Tensor, colors: Tensor, shapes: Tensor, *, steps: int = 600, batch: int = 64,
                     lr: float = 2e-3, width: int = 32, seed: int = 0, progress: bool = False) -> ShapeColorClassifier:
    """Train the two-head classifier on uint8 renders [N, 3, S, S] with colour and shape labels."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ShapeColorClassifier(len(COLOR_NAMES), len(shape_classes()), width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    x_all = images.float() / 255
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="training R-precision classifier")
    for _ in it:
        idx = torch.randint(0, x_all.shape[0], (batch,), generator=gen)
        c_logits, s_logits = model(_augment(x_all[idx], gen))
        loss = F.cross_entropy(c_logits, colors[idx]) + F.cross_entropy(s_logits, shapes[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def load_or_train_classifier(cfg: RenderSetConfig, steps: int = 600, progress: bool = False) -> ShapeColorClassifier:
    """The classifier for render set ``cfg``, trained once and cached (safetensors + JSON)."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"classifier_{cfg.key()}_{steps}.safetensors"
    if path.exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        model = ShapeColorClassifier(meta["n_colors"], meta["n_shapes"], meta["width"])
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    data = load_render_set(cfg, progress=progress)
    model = train_classifier(data["images"], data["color"], data["shape"], steps=steps, seed=cfg.seed, progress=progress)
    tmp = Path(f"{path}.tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    path.with_suffix(".json").write_text(json.dumps({"n_colors": model.n_colors, "n_shapes": model.n_shapes,
                                                     "width": model.width, "colors": COLOR_NAMES,
                                                     "shapes": shape_classes()}))
    os.replace(tmp, path)
    return model


@torch.no_grad()
def classify(model: ShapeColorClassifier, images: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted colour and shape indices of renders in [0, 1] (render them at the size the classifier was trained on)."""
    return tuple(logits.argmax(-1) for logits in model(images))


def eval_cameras(n_views: int = 8, elevation: float = 25.0, distance: float = 3.3):
    """The fixed evaluation views: ``n_views`` azimuths evenly spread at one elevation."""
    az = torch.arange(n_views, dtype=torch.float32) * (360.0 / n_views) + 15.0
    return orbit_cameras(torch.full((n_views,), elevation), az, distance)


@torch.no_grad()
def render_views(field: Callable, size: int = 32, n_views: int = 8, n_samples: int = 64) -> Tensor:
    """Renders [V, 3, S, S] in [0, 1] of ``field`` from the evaluation cameras (lit as in training)."""
    cams = eval_cameras(n_views)
    return render(field, cams, size, n_samples=n_samples, stratified=False, light=default_light(cams),
                  background=BACKGROUND)["rgb"].clamp(0, 1)


def ground_truth_field(color: str, shape: str, seed: int = 10_000, resolution: int = 48):
    """A held-out procedural shape of class ``shape`` in ``color`` (a seed range the training set never uses)."""
    from polydiff.domains.points.shapes import make_shape

    mesh = make_shape(shape, np.random.default_rng([seed, shape_classes().index(shape)]))
    return shape_field(voxelise(normalise_mesh(mesh), resolution, seed=seed), COLORS[color])


def r_precision(model: ShapeColorClassifier, renders: Sequence[Tensor], prompts: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Top-1 precision of colour and shape over all views of all prompts (``renders[i]`` are the views of prompt i)."""
    if len(renders) != len(prompts) or not prompts:
        raise ValueError("need one stack of renders per prompt, and at least one prompt")
    classes = shape_classes()
    hit_c, hit_s, hit_b, total = 0, 0, 0, 0
    for views, (color, shape) in zip(renders, prompts):
        pc, ps = classify(model, views)
        ok_c, ok_s = pc == COLOR_NAMES.index(color), ps == classes.index(shape)
        hit_c, hit_s, hit_b = hit_c + int(ok_c.sum()), hit_s + int(ok_s.sum()), hit_b + int((ok_c & ok_s).sum())
        total += views.shape[0]
    return {"color": hit_c / total, "shape": hit_s / total, "both": hit_b / total}


def parse_prompt(text: str) -> tuple[str, str]:
    """("red", "mug") from "a red mug" (colour and shape words of the procedural set)."""
    words = text.lower().replace(",", " ").split()
    colors = [w for w in words if w in COLOR_NAMES]
    shapes = [w for w in words if w in shape_classes()]
    if len(colors) != 1 or len(shapes) != 1:
        raise ValueError(f"R-precision needs prompts naming one colour of {COLOR_NAMES} and one shape of "
                         f"{shape_classes()}; got {text!r}")
    return colors[0], shapes[0]
