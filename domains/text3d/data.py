"""The labelled multi-view image set the 2D prior and the R-precision classifier learn from.

Procedural shapes of the point-cloud domain (``polydiff.domains.points.shapes``) are optionally reshaped by a size
attribute, normalised into the cube, voxelised to an occupancy grid, given a colour, and rendered by the same volume
renderer that score distillation uses, from random cameras with random lights. Each image has a caption
"a [attribute] {colour} {shape}, {view} view". Sets are cached as safetensors (uint8 images + label arrays) under
``$POLYDIFF_CACHE/text3d``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .cameras import random_cameras, view_name
from .fields import VoxelField
from .render import random_light, render
from .sections import RenderSetConfig
from .text import cache_dir

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.82, 0.10),
    "purple": (0.55, 0.20, 0.75),
    "orange": (1.00, 0.50, 0.05),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
VIEWS: tuple[str, ...] = ("front", "side", "back", "overhead")
BACKGROUND = (1.0, 1.0, 1.0)
# Size words: (scale of x, y, z before normalising, half extent after); index 0 is "no attribute".
ATTRIBUTES: dict[str, tuple[tuple[float, float, float], float]] = {
    "": ((1.0, 1.0, 1.0), 0.8),
    "small": ((1.0, 1.0, 1.0), 0.5),
    "tall": ((1.0, 1.0, 1.6), 0.8),
    "wide": ((1.6, 1.6, 1.0), 0.8),
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)


def shape_classes() -> tuple[str, ...]:
    """The shape classes of the procedural set (from the point-cloud domain)."""
    from polydiff.domains.points.shapes import CLASSES

    return tuple(CLASSES)


def caption(color: str, shape: str, view: str | None = None, attribute: str = "") -> str:
    """The caption of a render: "a red mug, front view", "a tall blue lamp" (no view part when ``view`` is None)."""
    words = f"{attribute} {color}" if attribute else color
    text = f"{'an' if words[0] in 'aeiou' else 'a'} {words} {shape}"
    return f"{text}, {view} view" if view else text


def shaped(mesh, attribute: str = ""):
    """``mesh`` stretched and normalised as its size ``attribute`` says (``ATTRIBUTES``; "" for none)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; choose one of {', '.join(ATTRIBUTE_NAMES[1:])}")
    stretch, half_extent = ATTRIBUTES[attribute]
    m = mesh.copy()
    m.vertices = m.vertices * np.asarray(stretch)
    return normalise_mesh(m, half_extent)


def check_combinations(cfg: RenderSetConfig) -> list[tuple[str, str]]:
    """The held-out (colour, shape) pairs of ``cfg``, checked against the known colours, shapes and attributes."""
    unknown = [a for a in cfg.attributes if a not in ATTRIBUTE_NAMES[1:]]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; choose from {', '.join(ATTRIBUTE_NAMES[1:])}")
    pairs = []
    for text in cfg.holdout:
        words = text.split()
        if len(words) != 2 or words[0] not in COLORS or words[1] not in shape_classes():
            raise ValueError(f"holdout {text!r} must be 'colour shape' with a colour of {', '.join(COLOR_NAMES)} and "
                             f"a shape of {', '.join(shape_classes())}")
        pairs.append((words[0], words[1]))
    if any(sum((c, s) in pairs for c in COLOR_NAMES) == len(COLOR_NAMES) for s in shape_classes()):
        raise ValueError("holdout leaves some shape with no colour at all")
    return pairs


def normalise_mesh(mesh, half_extent: float = 0.8):
    """A copy of ``mesh`` centred on its bounding box and scaled so its largest half extent is ``half_extent``."""
    m = mesh.copy()
    lo, hi = m.bounds
    m.apply_translation(-(lo + hi) / 2)
    m.apply_scale(half_extent / max(float((hi - lo).max()) / 2, 1e-9))
    return m


def voxelise(mesh, resolution: int = 48, bound: float = 1.0, n_points: int = 60000, seed: int = 0) -> np.ndarray:
    """Occupancy [R, R, R] ([x, y, z]) of a mesh: voxels its surface touches, with enclosed cavities filled.

    Surface voxels come from dense area-uniform surface samples (so thin parts such as lamp poles survive at coarse
    resolutions); ``scipy.ndimage.binary_fill_holes`` fills the closed interiors.
    """
    import trimesh

    pts, _ = trimesh.sample.sample_surface(mesh, n_points, seed=seed)
    idx = np.floor((np.asarray(pts) + bound) / (2 * bound) * resolution).astype(np.int64)
    idx = idx[((idx >= 0) & (idx < resolution)).all(1)]
    occ = np.zeros((resolution,) * 3, dtype=bool)
    occ[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return ndimage.binary_fill_holes(occ)


def shape_field(occupancy: np.ndarray, rgb: tuple[float, float, float], density: float = 40.0, blur: float = 0.6,
                bound: float = 1.0) -> VoxelField:
    """A fixed voxel field of one colour whose density is a slightly blurred occupancy grid (soft, anti-aliased edges).

    The occupancy cells become the nodes of a grid of the same resolution over [-bound, bound]^3 (cell centres
    mapped onto nodes, a shrink of at most one cell).
    """
    soft = ndimage.gaussian_filter(occupancy.astype(np.float32), blur) if blur > 0 else occupancy.astype(np.float32)
    return VoxelField.from_grids(torch.from_numpy(soft * density), torch.tensor(rgb), bound)


def _render_shape(occ: np.ndarray, rgb: tuple[float, float, float], cfg: RenderSetConfig, gen: torch.Generator,
                  ambient: float):
    field = shape_field(occ, rgb)
    cams = random_cameras(cfg.views_per_shape, gen)
    with torch.no_grad():
        out = render(field, cams, cfg.size, n_samples=cfg.n_samples, light=random_light(cams, gen), generator=gen,
                     background=BACKGROUND, ambient=ambient)
    views = [VIEWS.index(view_name(float(e), float(a))) for e, a in zip(cams.elevation, cams.azimuth)]
    return out["rgb"], views, cams


def build_render_set(cfg: RenderSetConfig, progress: bool = False) -> dict[str, torch.Tensor]:
    """Render the labelled set (no caching): ``images`` uint8 [N, 3, S, S], ``shape``, ``color``, ``view``,
    ``attribute`` (indices), ``elevation``, ``azimuth`` (degrees)."""
    from polydiff.domains.points.shapes import labelled_set

    classes = shape_classes()
    held_out = check_combinations(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    meshes = labelled_set(cfg.n_per_class, seed=cfg.seed)
    imgs, shapes, colors, views, attrs, els, azs = [], [], [], [], [], [], []
    items = meshes
    if progress:
        from tqdm import tqdm

        items = tqdm(meshes, desc="rendering prior set")
    for k, (mesh, name) in enumerate(items):
        attribute = ""
        if cfg.attributes and rng.random() < cfg.attribute_rate:
            attribute = cfg.attributes[int(rng.integers(len(cfg.attributes)))]
        occ = voxelise(shaped(mesh, attribute), cfg.voxel_resolution, seed=cfg.seed * 100003 + k)
        allowed = [c for c in COLOR_NAMES if (c, name) not in held_out]
        ci = COLOR_NAMES.index(allowed[int(rng.integers(len(allowed)))])
        rgb = np.clip(np.array(COLORS[COLOR_NAMES[ci]]) + rng.uniform(-cfg.color_jitter, cfg.color_jitter, 3), 0, 1)
        ambient = float(rng.uniform(*cfg.ambient)) if cfg.ambient[0] < cfg.ambient[1] else cfg.ambient[0]
        rgb_img, vidx, cams = _render_shape(occ, tuple(rgb.tolist()), cfg, gen, ambient)
        imgs.append((rgb_img.clamp(0, 1) * 255).round().to(torch.uint8))
        shapes += [classes.index(name)] * len(vidx)
        colors += [ci] * len(vidx)
        attrs += [ATTRIBUTE_NAMES.index(attribute)] * len(vidx)
        views += vidx
        els.append(cams.elevation)
        azs.append(cams.azimuth)
    return {
        "images": torch.cat(imgs),
        "shape": torch.tensor(shapes),
        "color": torch.tensor(colors),
        "view": torch.tensor(views),
        "attribute": torch.tensor(attrs),
        "elevation": torch.cat(els),
        "azimuth": torch.cat(azs),
    }


def load_render_set(cfg: RenderSetConfig, progress: bool = False, cache: bool = True) -> dict[str, torch.Tensor]:
    """The render set of ``cfg``, from the cache when present, else rendered and cached atomically."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"{cfg.key()}.safetensors"
    if cache and path.exists():
        return load_file(str(path))
    data = build_render_set(cfg, progress)
    if cache:
        tmp = Path(f"{path}.tmp{os.getpid()}")
        save_file({k: v.contiguous() for k, v in data.items()}, str(tmp),
                  metadata={"config": json.dumps(asdict(cfg)), "shapes": json.dumps(shape_classes()),
                            "colors": json.dumps(COLOR_NAMES), "views": json.dumps(VIEWS),
                            "attributes": json.dumps(ATTRIBUTE_NAMES)})
        os.replace(tmp, path)
    return data


def captions_of(data: dict[str, torch.Tensor]) -> list[str]:
    """The caption of every image of a render set."""
    classes = shape_classes()
    attrs = data["attribute"].tolist() if "attribute" in data else [0] * len(data["shape"])
    return [caption(COLOR_NAMES[c], classes[s], VIEWS[v], ATTRIBUTE_NAMES[a])
            for s, c, v, a in zip(data["shape"].tolist(), data["color"].tolist(), data["view"].tolist(), attrs)]


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] images to floats in [-1, 1] (the prior's data range)."""
    return images.float() / 127.5 - 1.0


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] back to [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)
