"""Cameras on a sphere around the object (elevation, azimuth, distance, look-at) and the rays of their pixels.

World frame: z is up, the object sits in the cube [-1, 1]^3, azimuth 0 looks from +x ("front"), elevation is the angle
above the xy-plane. Cameras follow the OpenGL convention (looking along their -z axis, y up in the image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class Cameras:
    """A batch of B pinhole cameras: camera-to-world rotations [B, 3, 3], positions [B, 3], vertical field of view."""

    rotation: Tensor
    position: Tensor
    fov_deg: float
    elevation: Tensor
    azimuth: Tensor

    def __len__(self) -> int:
        return self.position.shape[0]


def look_at(position: Tensor, target: Tensor | None = None, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> Tensor:
    """Camera-to-world rotations [B, 3, 3] (columns: right, up, backward) of cameras at ``position`` [B, 3]."""
    target = torch.zeros_like(position) if target is None else target
    back = torch.nn.functional.normalize(position - target, dim=-1)
    up_t = torch.tensor(up, dtype=position.dtype, device=position.device).expand_as(back)
    right = torch.linalg.cross(up_t, back, dim=-1)
    # Straight above or below: any horizontal right vector will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    right = torch.where(degenerate, torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype, device=position.device), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.linalg.cross(back, right, dim=-1)
    return torch.stack([right, true_up, back], dim=-1)


def orbit_cameras(elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor | float, fov_deg: float = 40.0) -> Cameras:
    """Cameras at the given elevations/azimuths (degrees, shape [B]) and distances, all looking at the origin."""
    el, az = torch.deg2rad(elevation_deg.float()), torch.deg2rad(azimuth_deg.float())
    dist = torch.as_tensor(distance, dtype=torch.float32).expand_as(el)
    position = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1) * dist[:, None]
    return Cameras(look_at(position), position, float(fov_deg), elevation_deg.float(), azimuth_deg.float())


def random_cameras(n: int, generator: torch.Generator | None = None, elevation_range: tuple[float, float] = (-10.0, 60.0),
                   distance_range: tuple[float, float] = (3.0, 3.6), fov_deg: float = 40.0) -> Cameras:
    """``n`` cameras with azimuth uniform on [-180, 180), elevation and distance uniform on their ranges."""
    u = torch.rand(n, 3, generator=generator)
    el = elevation_range[0] + (elevation_range[1] - elevation_range[0]) * u[:, 0]
    az = -180.0 + 360.0 * u[:, 1]
    dist = distance_range[0] + (distance_range[1] - distance_range[0]) * u[:, 2]
    return orbit_cameras(el, az, dist, fov_deg)


def turntable_cameras(n: int, elevation_deg: float = 20.0, distance: float = 3.3, fov_deg: float = 40.0) -> Cameras:
    """``n`` cameras evenly spaced in azimuth at one elevation (the frames of a turntable animation)."""
    az = torch.arange(n, dtype=torch.float32) * (360.0 / n)
    return orbit_cameras(torch.full((n,), float(elevation_deg)), az, distance, fov_deg)


def view_name(elevation_deg: float, azimuth_deg: float) -> str:
    """DreamFusion's view-dependent prompt word: "overhead" above 60 degrees, else front/side/back by azimuth."""
    if elevation_deg > 60.0:
        return "overhead"
    a = abs((azimuth_deg + 180.0) % 360.0 - 180.0)
    return "front" if a < 45.0 else ("side" if a < 135.0 else "back")


def camera_rays(cams: Cameras, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Origins and unit directions [B, H, W, 3] of the rays through the pixel centres."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    focal = 0.5 * height / math.tan(math.radians(cams.fov_deg) / 2)
    j, i = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5, torch.arange(width, dtype=torch.float32) + 0.5,
                          indexing="ij")
    dirs_cam = torch.stack([(i - width / 2) / focal, -(j - height / 2) / focal, -torch.ones_like(i)], dim=-1)
    dirs_cam = dirs_cam.to(cams.rotation.device)
    dirs = torch.einsum("bij,hwj->bhwi", cams.rotation, dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = cams.position[:, None, None, :].expand_as(dirs)
    return origins, dirs
