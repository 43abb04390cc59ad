"""Turntable previews: a ring of renders saved as an animated GIF (Pillow) or a PNG strip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cameras import turntable_cameras
from .render import Field, render


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] floats in [0, 1] to [B, H, W, 3] uint8."""
    return (images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def turntable_frames(field: Field, n_frames: int = 24, size: int = 128, elevation: float = 20.0, distance: float = 3.3,
                     n_samples: int = 96, shading: str = "lambert") -> np.ndarray:
    """Render ``n_frames`` views around the object (one camera at a time), as [N, H, W, 3] uint8."""
    cams = turntable_cameras(n_frames, elevation, distance)
    frames = []
    for k in range(n_frames):
        one = type(cams)(cams.rotation[k:k + 1], cams.position[k:k + 1], cams.fov_deg, cams.elevation[k:k + 1],
                         cams.azimuth[k:k + 1])
        frames.append(to_uint8(render(field, one, size, n_samples=n_samples, stratified=False, shading=shading)["rgb"])[0])
    return np.stack(frames)


def save_gif(frames: np.ndarray, path: str | Path, fps: float = 12.0) -> Path:
    """Write [N, H, W, 3] uint8 frames as a looping animated GIF."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0, optimize=False)
    return path


def save_strip(frames: np.ndarray, path: str | Path) -> Path:
    """Write frames side by side as one PNG (a static preview)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(path)
    return path
