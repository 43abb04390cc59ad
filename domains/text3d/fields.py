"""Radiance fields over the cube [-1, 1]^3: ``field(points [P, 3]) -> (density [P], rgb [P, 3])``.

``VoxelField`` stores raw density and colour on a grid read with trilinear interpolation (``F.grid_sample``);
``MLPField`` is a small coordinate MLP on Fourier features. Both add Magic3D's "blob" density bias so that
optimisation starts from a soft ball in the centre. ``SphereField`` is an analytic field for tests and examples.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def norm3(v: Tensor) -> Tensor:
    """Euclidean norm over a last axis of size 3 (much faster on CPU than ``torch.linalg.vector_norm`` there)."""
    return (v * v).sum(-1).sqrt()


def normalize3(v: Tensor, eps: float = 1e-8) -> Tensor:
    """Unit vectors along the last axis (size 3); zero vectors stay (near) zero."""
    return v * torch.rsqrt((v * v).sum(-1, keepdim=True) + eps * eps)


def blob_bias(points: Tensor, density: float, radius: float) -> Tensor:
    """Magic3D's density bias ``density * (1 - |x| / radius)``: positive inside a ball, negative outside."""
    if density == 0:
        return torch.zeros(points.shape[:-1], dtype=points.dtype, device=points.device)
    return density * (1 - norm3(points) / radius)


def _inside(points: Tensor, bound: float) -> Tensor:
    return (points.abs() <= bound).all(dim=-1)


class VoxelField(nn.Module):
    """Density and colour on an R^3 grid spanning [-bound, bound]^3 (trilinear interpolation, softplus / sigmoid)."""

    def __init__(self, resolution: int = 32, bound: float = 1.0, blob_density: float = 10.0, blob_radius: float = 0.5,
                 density_scale: float = 1.0) -> None:
        super().__init__()
        if resolution < 2:
            raise ValueError(f"VoxelField needs resolution >= 2, got {resolution}")
        self.resolution, self.bound = resolution, float(bound)
        self.blob_density, self.blob_radius, self.density_scale = float(blob_density), float(blob_radius), float(density_scale)
        # Layout [1, C, D, H, W] = [1, C, z, y, x], as grid_sample reads it.
        self.density = nn.Parameter(torch.zeros(1, 1, resolution, resolution, resolution))
        self.color = nn.Parameter(torch.zeros(1, 3, resolution, resolution, resolution))
        self.register_buffer("occupancy", torch.ones(resolution - 1, resolution - 1, resolution - 1, dtype=torch.bool),
                             persistent=False)

    @classmethod
    def from_grids(cls, density: Tensor, rgb: Tensor, bound: float = 1.0) -> "VoxelField":
        """A fixed field from a density grid [R, R, R] and a colour grid [3, R, R, R] or [3], both indexed [x, y, z]."""
        r = density.shape[0]
        if density.shape != (r, r, r):
            raise ValueError(f"density grid must be cubic [R, R, R], got {tuple(density.shape)}")
        field = cls(r, bound, blob_density=0.0)
        rgb = rgb.reshape(3, 1, 1, 1).expand(3, r, r, r) if rgb.numel() == 3 else rgb
        with torch.no_grad():
            d = density.float().clamp_min(1e-6)
            field.density.copy_(torch.where(d > 20, d, torch.log(torch.expm1(d))).permute(2, 1, 0)[None, None])
            field.color.copy_(torch.logit(rgb.float().clamp(1e-4, 1 - 1e-4)).permute(0, 3, 2, 1)[None])
        field.refresh_occupancy(threshold=1e-4, dilate=0)
        return field

    @torch.no_grad()
    def upsampled(self, resolution: int) -> "VoxelField":
        """A copy on a finer grid (trilinear resampling of the raw grids, so the field is unchanged between nodes of
        the old grid up to interpolation): the coarse-to-fine step of a distillation."""
        fine = VoxelField(resolution, self.bound, self.blob_density, self.blob_radius, self.density_scale)
        fine = fine.to(self.density.device)
        size = (resolution,) * 3
        fine.density.copy_(F.interpolate(self.density, size=size, mode="trilinear", align_corners=True))
        fine.color.copy_(F.interpolate(self.color, size=size, mode="trilinear", align_corners=True))
        fine.refresh_occupancy()
        return fine

    @torch.no_grad()
    def node_density(self) -> Tensor:
        """Density at the grid nodes, [D, H, W] = [z, y, x]."""
        r = self.resolution
        axis = torch.linspace(-self.bound, self.bound, r, device=self.density.device)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        bias = blob_bias(torch.stack([x, y, z], -1), self.blob_density, self.blob_radius)
        return F.softplus(self.density_scale * self.density[0, 0] + bias)

    @torch.no_grad()
    def refresh_occupancy(self, threshold: float = 0.01, dilate: int = 1) -> float:
        """Mark the cells with a corner denser than ``threshold`` (grown by ``dilate`` cells) as occupied.

        The renderer skips samples in unoccupied cells (empty-space skipping, as Instant-NGP's occupancy grid);
        the grown margin lets the surface move during optimisation. Returns the occupied fraction.
        """
        dense = (self.node_density() > threshold).float()[None, None]
        cells = F.max_pool3d(dense, 2, stride=1)
        if dilate > 0:
            cells = F.max_pool3d(cells, 2 * dilate + 1, stride=1, padding=dilate)
        self.occupancy = cells[0, 0] > 0
        return float(self.occupancy.float().mean())

    def occupied(self, points: Tensor) -> Tensor:
        """Whether each point [P, 3] lies in an occupied cell (False outside the grid)."""
        n = self.resolution - 1
        idx = torch.floor((points + self.bound) / (2 * self.bound) * n).long()
        inside = ((idx >= 0) & (idx < n)).all(-1)
        idx = idx.clamp(0, n - 1)
        return inside & self.occupancy[idx[:, 2], idx[:, 1], idx[:, 0]]

    analytic_normals = True

    def _density_gradient_grid(self) -> Tensor:
        """Central differences of the raw density on the grid, in world units, as [1, 3, D, H, W] (x, y, z)."""
        d = self.density_scale * self.density
        spacing = 2 * self.bound / (self.resolution - 1)
        grads = []
        for dim in (4, 3, 2):  # W = x, H = y, D = z
            padded = torch.cat([d.narrow(dim, 0, 1), d, d.narrow(dim, d.shape[dim] - 1, 1)], dim)
            n = d.shape[dim]
            grads.append((padded.narrow(dim, 2, n) - padded.narrow(dim, 0, n)) / (2 * spacing))
        return torch.cat(grads, 1)

    def query(self, points: Tensor, normals: bool = False) -> tuple[Tensor, ...]:
        """Density [P], colour [P, 3] and, with ``normals``, unit normals [P, 3] (minus the density gradient).

        The gradient grid is read with the same trilinear interpolation, so normals cost one wider grid lookup
        instead of six extra field evaluations.
        """
        scaled = points if self.bound == 1.0 else points / self.bound
        grid = scaled.reshape(1, -1, 1, 1, 3).to(self.density.dtype)
        vols = [self.density, self.color] + ([self._density_gradient_grid()] if normals else [])
        raw = F.grid_sample(torch.cat(vols, 1), grid, mode="bilinear", align_corners=True)
        raw = raw.reshape(raw.shape[1], -1).t()
        pre = self.density_scale * raw[:, 0] + blob_bias(points, self.blob_density, self.blob_radius)
        inside = _inside(points, self.bound)
        density = torch.where(inside, F.softplus(pre), torch.zeros_like(pre))
        if not normals:
            return density, torch.sigmoid(raw[:, 1:4])
        grad = raw[:, 4:7]
        if self.blob_density != 0:
            grad = grad - self.blob_density / self.blob_radius * normalize3(points)
        return density, torch.sigmoid(raw[:, 1:4]), -normalize3(grad)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Density [P] and colour [P, 3] at points [P, 3]; zero density outside the grid."""
        return self.query(points)


class MLPField(nn.Module):
    """A coordinate MLP on NeRF positional encoding (``n_freqs`` octaves) predicting density and colour."""

    def __init__(self, hidden: int = 64, layers: int = 3, n_freqs: int = 6, bound: float = 1.0, blob_density: float = 10.0,
                 blob_radius: float = 0.5) -> None:
        super().__init__()
        self.bound, self.blob_density, self.blob_radius = float(bound), float(blob_density), float(blob_radius)
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs)) * math.pi)
        dims = [3 + 6 * n_freqs] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.SiLU()]
        mods.append(nn.Linear(hidden, 4))
        self.mlp = nn.Sequential(*mods)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Density [P] and colour [P, 3] at points [P, 3]; zero density outside the bounding cube."""
        x = points / self.bound
        ang = x[..., None] * self.freqs
        feats = torch.cat([x, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)
        raw = self.mlp(feats)
        density = F.softplus(raw[:, 0] + blob_bias(points, self.blob_density, self.blob_radius))
        density = torch.where(_inside(points, self.bound), density, torch.zeros_like(density))
        return density, torch.sigmoid(raw[:, 1:])


class SphereField(nn.Module):
    """A ball of constant density and colour: the analytic reference of the renderer's tests."""

    def __init__(self, radius: float = 0.6, density: float = 5.0, rgb: tuple[float, float, float] = (1.0, 0.0, 0.0),
                 center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__()
        self.radius = float(radius)
        self.log_density = nn.Parameter(torch.tensor(math.log(density)))
        self.register_buffer("rgb", torch.tensor(rgb, dtype=torch.float32))
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        inside = norm3(points - self.center) <= self.radius
        density = torch.where(inside, self.log_density.exp().expand(points.shape[0]), torch.zeros(points.shape[0]))
        return density, self.rgb.expand(points.shape[0], 3)
