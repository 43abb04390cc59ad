"""Differentiable volume rendering (NeRF-style alpha compositing along rays) of a radiance field.

Rays are clipped to the field's bounding cube, sampled at ``n_samples`` stratified points, and composited over a
background colour. Besides colour the renderer returns opacity, depth and shaded normals, with normals taken from the
density gradient (central finite differences, so they work with any field and stay differentiable).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .cameras import Cameras, camera_rays
from .fields import normalize3

Tensor = torch.Tensor
Field = Callable[[Tensor], tuple[Tensor, Tensor]]
SHADINGS = ("albedo", "lambert", "normal")


def ray_box(origins: Tensor, dirs: Tensor, bound: float = 1.0) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays through the cube [-bound, bound]^3 (both 0 for rays that miss it)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (-bound - origins) * inv, (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    return torch.where(hit, near, torch.zeros_like(near)), torch.where(hit, far, torch.zeros_like(far))


def composite(density: Tensor, deltas: Tensor) -> Tensor:
    """Compositing weights w_i = T_i (1 - exp(-sigma_i delta_i)) for [R, S] densities and step lengths."""
    tau = density * deltas
    alpha = 1 - torch.exp(-tau)
    trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], dim=1), dim=1))
    return alpha * trans


def density_normals(field: Field, points: Tensor, h: float) -> Tensor:
    """Unit normals -grad(sigma)/|grad(sigma)| at points [P, 3] by central differences with step ``h``."""
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * h
    probe = torch.cat([points[None] + offsets[:, None], points[None] - offsets[:, None]], 0).reshape(-1, 3)
    d, _ = field(probe)
    d = d.reshape(2, 3, -1)
    grad = (d[0] - d[1]).t() / (2 * h)
    return -normalize3(grad)


def default_light(cams: Cameras) -> Tensor:
    """A light from the camera's side, raised above it: unit directions [B, 3] towards the light."""
    right, up, back = cams.rotation.unbind(-1)
    return F.normalize(back + 0.5 * up + 0.3 * right, dim=-1)


def random_light(cams: Cameras, generator: torch.Generator | None = None, spread: float = 0.6) -> Tensor:
    """DreamFusion-style light sampled around the camera direction (a random tilt of up to ``spread``)."""
    right, up, back = cams.rotation.unbind(-1)
    u = (torch.rand(len(cams), 2, generator=generator) * 2 - 1).to(back.device) * spread
    return F.normalize(back + u[:, :1] * right + (0.3 + u[:, 1:]) * up, dim=-1)


def render(field: Field, cams: Cameras, height: int, width: int | None = None, *, n_samples: int = 64,
           background: Tensor | tuple[float, float, float] = (1.0, 1.0, 1.0), shading: str = "lambert",
           light: Tensor | None = None, ambient: float = 0.35, stratified: bool = True, bound: float = 1.0,
           generator: torch.Generator | None = None, normal_step: float | None = None) -> dict[str, Tensor]:
    """Render B cameras to images: ``rgb`` [B, 3, H, W] in [0, 1], ``opacity`` [B, 1, H, W], ``depth``, ``normal`` and
    ``orientation`` (the last two unless albedo shading; orientation is Ref-NeRF's penalty, per pixel the weighted
    sum of max(0, n . d)^2 over the ray's samples: normals that face away from the camera where it sees density).

    ``shading``: "albedo" (field colour), "lambert" (colour * (ambient + (1 - ambient) max(0, n.l))) or "normal"
    (normals mapped to colours). Samples are stratified (one uniform draw per bin) unless ``stratified=False``, which
    takes bin centres; each sample stands for its bin, so the optical depth is an unbiased quadrature of the integral.
    """
    if shading not in SHADINGS:
        raise ValueError(f"unknown shading {shading!r}; choose one of {', '.join(SHADINGS)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    width = width or height
    origins, dirs = camera_rays(cams, height, width)
    b = len(cams)
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    near, far = ray_box(o, d, bound)
    u = torch.rand(o.shape[0], n_samples, generator=generator).to(o.device) if stratified else torch.full((o.shape[0], n_samples), 0.5, device=o.device)
    bins = torch.arange(n_samples, dtype=o.dtype, device=o.device)
    step = (far - near) / n_samples
    t = near[:, None] + (bins + u) * step[:, None]
    pts = o[:, None] + d[:, None] * t[..., None]
    flat = pts.reshape(-1, 3)
    want_normals = shading != "albedo"
    skip = getattr(field, "occupied", None)
    keep = skip(flat).nonzero().squeeze(1) if skip is not None else None
    query = flat if keep is None else flat[keep]
    if want_normals and getattr(field, "analytic_normals", False):
        density, rgb, normals = field.query(query, normals=True)
    else:
        density, rgb = field(query)
        if want_normals:
            h = normal_step if normal_step is not None else 2 * bound / 64
            normals = density_normals(field, query, h)
    if keep is not None:
        density = flat.new_zeros(flat.shape[0]).index_put((keep,), density)
    density = density.reshape(-1, n_samples)
    w = composite(density, step[:, None].expand_as(density))
    opacity = w.sum(1, keepdim=True)
    depth = (w * t).sum(1, keepdim=True) + (1 - opacity) * far[:, None]
    # Only the evaluated samples carry colour: composite them with index_add over their rays.
    ray = (torch.arange(flat.shape[0], device=o.device) if keep is None else keep) // n_samples
    wk = w.reshape(-1) if keep is None else w.reshape(-1)[keep]
    out: dict[str, Tensor] = {}
    if want_normals:
        out["normal"] = o.new_zeros(o.shape[0], 3).index_add(0, ray, wk[:, None] * normals)
        out["normal"] = out["normal"].reshape(b, height, width, 3).permute(0, 3, 1, 2)
        facing = (normals * d[ray]).sum(-1).clamp_min(0.0).square()
        out["orientation"] = o.new_zeros(o.shape[0]).index_add(0, ray, wk * facing).reshape(b, 1, height, width)
        if shading == "lambert":
            light = default_light(cams) if light is None else light
            lam = (normals * light.to(o.device)[ray // (height * width)]).sum(-1, keepdim=True).clamp_min(0.0)
            rgb = rgb * (ambient + (1 - ambient) * lam)
        else:
            rgb = (normals + 1) / 2
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    bg = bg.reshape(-1, 1, 3).expand(b, height * width, 3).reshape(-1, 3) if bg.ndim == 2 else bg.expand(o.shape[0], 3)
    color = o.new_zeros(o.shape[0], 3).index_add(0, ray, wk[:, None] * rgb) + (1 - opacity) * bg
    out["rgb"] = color.reshape(b, height, width, 3).permute(0, 3, 1, 2)
    out["opacity"] = opacity.reshape(b, 1, height, width)
    out["depth"] = depth.reshape(b, 1, height, width)
    return out
