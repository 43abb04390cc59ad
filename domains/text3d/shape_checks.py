"""Per-class geometric checks of exported text3d meshes: does "a mug" have a handle, "a table" a top on supports?

Every check works on a voxel occupancy of the mesh in its own bounding box (z up, any offset, scale or azimuth), so
it reads distilled objects and procedural ones alike, and on horizontal slices of it:

* mug: a round body (the footprint of the lowest layers fills most of its enclosing circle) and a handle, i.e.
  material at mid-height well outside that circle, on one side only. The handle counts with or without a
  through-hole: marching cubes of a blurred 48^3 field often closes a small handle's loop (genus 0, a solid fin).
  The through-hole (rays along the handle's axis that pass between handle and body) and the genus are reported.
* table: the largest slice in the upper 15 % of the height lies in a flat slab at the very top (at least twice as
  wide as thick, which a lamp's shade is not), is >= 3x the slices at mid-height, and these are >= 3 separate legs
  or one narrow central pedestal under it.
* chair: the largest slice between 15 % and 75 % of the height (the seat) stands on >= 3 legs or one narrow
  support, and the upper half of what rises above the seat (the back, above any arms) sits on one side: its
  centroid is off the seat's by >= 0.4 of the seat's extent that way, and it holds >= 5 % of the volume.

Thresholds were set on ground-truth fields through the exporter's pipeline and on raw procedural meshes, at random
azimuths (all mugs, tables and chairs pass their own check and no other class passes theirs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    import trimesh

CHECKED = ("mug", "table", "chair")
RESOLUTION = 64
"""Voxels along the longest side of the mesh's bounding box."""
SAMPLES_PER_CELL = 24
"""Surface samples per voxel face area: dense enough that the sampled shell has no gaps."""
EIGHT = np.ones((3, 3), bool)
"""8-connectivity in a slice, so a thin diagonal leg stays one component."""


@dataclass
class Voxels:
    """Occupancy of a mesh: ``shell`` (voxels its surface touches), ``solid`` (closed parts filled), [x, y, z]."""

    shell: np.ndarray
    solid: np.ndarray


def voxelise(mesh: "trimesh.Trimesh", resolution: int = RESOLUTION, seed: int = 0) -> Voxels:
    """The mesh's occupancy in its bounding box, ``resolution`` voxels along the longest side (seeded samples, so
    the same mesh always gives the same grid)."""
    import trimesh

    lo, hi = np.asarray(mesh.bounds, float)
    cell = max(float((hi - lo).max()), 1e-9) / resolution
    dims = np.floor((hi - lo) / cell).astype(int) + 1
    n = int(np.clip(SAMPLES_PER_CELL * mesh.area / cell ** 2, 20_000, 1_000_000))
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    pts = np.concatenate([np.asarray(pts), np.asarray(mesh.vertices)])
    idx = np.clip(np.floor((pts - lo) / cell).astype(int), 0, dims - 1)
    shell = np.zeros(dims, bool)
    shell[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return Voxels(shell, _solid(shell))


def _solid(shell: np.ndarray) -> np.ndarray:
    """The shell with its enclosed volumes filled, after a one-voxel closing that seals sampling gaps."""
    padded = np.pad(shell, 2)
    closed = ndimage.binary_closing(padded, structure=np.ones((3, 3, 3), bool))
    return ndimage.binary_fill_holes(closed)[2:-2, 2:-2, 2:-2] | shell


def _layers(nz: int, lo: float, hi: float) -> slice:
    """The z layers between fractions ``lo`` and ``hi`` of the height (at least one)."""
    a = int(np.floor(lo * nz))
    return slice(min(a, nz - 1), max(int(np.ceil(hi * nz)), a + 1))


def _areas(solid: np.ndarray) -> np.ndarray:
    """Voxels per horizontal layer."""
    return solid.sum(axis=(0, 1))


def _components(plane: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of a slice, each as its [K, 2] pixel coordinates, largest first."""
    labels, n = ndimage.label(plane, structure=EIGHT)
    parts = [np.argwhere(labels == k) for k in range(1, n + 1)]
    return sorted(parts, key=len, reverse=True)


def _reach(pixels: np.ndarray, centre: np.ndarray) -> float:
    """The largest distance (voxels) of the pixels' centres from ``centre``."""
    return float(np.linalg.norm(pixels - centre, axis=1).max()) if len(pixels) else 0.0


def _supports(solid: np.ndarray, band: slice, centre: np.ndarray, top_reach: float) -> dict[str, Any]:
    """What holds a top up, from the layers of ``band``: the typical (median) number of components, their area, the
    largest one's area and how far the support reaches from the top's centre relative to the top's own reach."""
    counts, areas, largest, reaches = [], [], [], []
    for k in range(band.start, band.stop):
        parts = _components(solid[:, :, k])
        counts.append(len(parts))
        areas.append(sum(len(p) for p in parts))
        largest.append(len(parts[0]) if parts else 0)
        reaches.append(max((_reach(p, centre) for p in parts), default=0.0))
    return {"supports": int(np.median(counts)), "support_area": float(np.median(areas)),
            "largest_support": float(np.median(largest)),
            "support_reach": round(float(np.median(reaches)) / max(top_reach, 1e-9), 3)}


def _held_up(s: dict[str, Any], top_area: float, narrow: float = 0.4, small: float = 0.35,
             leg: float = 0.15) -> tuple[bool, str]:
    """Whether supports ``s`` are legs (>= 3 components, none over ``leg`` of the top's area: an airplane's
    fuselage and engines are not) or a pedestal (one narrow central component), all far smaller than the top."""
    if s["supports"] == 0 or s["support_area"] > small * top_area:
        return False, "no slender supports"
    if s["supports"] >= 3 and s["largest_support"] > leg * top_area:
        return False, f"{s['supports']} supports, too thick for legs"
    if s["supports"] >= 3:
        return True, f"{s['supports']} legs"
    if s["supports"] == 1 and s["support_reach"] <= narrow:
        return True, "a central pedestal"
    if s["supports"] == 1:
        return False, f"one support, too wide for a pedestal ({s['support_reach']:.2f} of the top's reach)"
    return False, f"{s['supports']} supports, not >= 3 legs"


def _spread(angles: np.ndarray) -> float:
    """The smallest arc (degrees) that holds all ``angles`` (radians): 360 minus the widest gap between them."""
    if len(angles) == 0:
        return 0.0
    a = np.sort(np.mod(np.degrees(angles), 360.0))
    gaps = np.diff(np.concatenate([a, a[:1] + 360.0]))
    return float(360.0 - gaps.max())


def _through_hole(shell: np.ndarray, centre: np.ndarray, azimuth: float, radius: float) -> int:
    """The ray test: pixels of the side view along the handle's axis (horizontal, across ``azimuth``) where a ray
    passes between handle and body, i.e. enclosed holes of that silhouette outside the body's radius."""
    pts = np.argwhere(shell).astype(float)
    offsets = np.array([[-0.25, -0.25], [-0.25, 0.25], [0.25, -0.25], [0.25, 0.25]])
    xy = (pts[:, None, :2] + offsets[None]).reshape(-1, 2) - centre
    z = np.repeat(pts[:, 2], 4).astype(int)
    s = xy @ np.array([np.cos(azimuth), np.sin(azimuth)])
    cols = np.floor(s - s.min()).astype(int)
    view = np.zeros((cols.max() + 1, shell.shape[2]), bool)
    view[cols, z] = True
    holes = ndimage.binary_fill_holes(view) & ~view
    outside = (np.arange(view.shape[0]) + s.min() > radius * 0.9)[:, None]
    return int((holes & outside).sum())


def _body(solid: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The round body a mug stands on, from the footprint of its lowest 8 % of layers: centre, radius of a disc of
    the same area, and roundness (the footprint's share of the circle that encloses it; a disc gives ~1)."""
    foot = np.argwhere(solid[:, :, _layers(solid.shape[2], 0.0, 0.08)].any(axis=2)).astype(float)
    centre = foot.mean(axis=0)
    radius = float(np.sqrt(len(foot) / np.pi))
    return centre, radius, len(foot) / (np.pi * max(_reach(foot, centre), 0.5) ** 2)


def _handle(solid: np.ndarray, centre: np.ndarray, radius: float) -> dict[str, Any]:
    """What sticks out of the body at mid-height (25-75 % of the height): its pixels (seen from above) beyond
    1.1 body radii, how far it reaches (in body radii), the arc it spans (degrees) and its mean azimuth."""
    mid = np.argwhere(solid[:, :, _layers(solid.shape[2], 0.25, 0.75)].any(axis=2)).astype(float) - centre
    dist = np.linalg.norm(mid, axis=1)
    out = mid[dist > 1.1 * radius + 1.0]
    return {"pixels": len(out), "reach": float(dist.max()) / max(radius, 1e-9),
            "spread": _spread(np.arctan2(out[:, 1], out[:, 0])),
            "azimuth": float(np.arctan2(*out.mean(axis=0)[::-1])) if len(out) else 0.0}


def check_mug(vox: Voxels, mesh: "trimesh.Trimesh") -> dict[str, Any]:
    """A round body with a one-sided handle at mid-height (a loop or a solid fin); the through-hole and genus are
    measured too (see the module docstring for why a closed loop still counts)."""
    from polydiff.domains.text3d.cleanup import mesh_report

    centre, radius, roundness = _body(vox.solid)
    h = _handle(vox.solid, centre, radius)
    hole = _through_hole(vox.shell, centre, h["azimuth"], radius) if h["pixels"] else 0
    genus = mesh_report(mesh)["genus"]
    found = {"roundness": round(roundness, 3), "handle_pixels": h["pixels"], "handle_reach": round(h["reach"], 3),
             "handle_spread_deg": round(h["spread"], 1), "through_hole_pixels": hole, "genus": genus}
    if roundness < 0.7:
        return {**found, "passed": False, "reason": f"no round body: footprint fills {roundness:.0%} of its circle"}
    if h["pixels"] < 4 or h["reach"] < 1.2:
        return {**found, "passed": False, "reason": f"no handle: nothing outside the round body (reach "
                                                     f"{h['reach']:.2f} of its radius), genus {genus}"}
    if h["spread"] > 120.0:
        return {**found, "passed": False, "reason": f"no handle: the body widens all round ({h['spread']:.0f} deg), "
                                                     f"not on one side"}
    kind = f"handle loop found: through-hole of {hole} px" if hole else "handle found (solid, no through-hole)"
    return {**found, "passed": True, "reason": f"{kind}, genus {genus}, {h['spread']:.0f} deg wide on one side"}


def _slab(areas: np.ndarray, k: int) -> tuple[int, int]:
    """The layers around layer ``k`` whose area is at least half of layer ``k``'s: first and last index."""
    big = areas >= 0.5 * areas[k]
    lo, hi = k, k
    while lo > 0 and big[lo - 1]:
        lo -= 1
    while hi < len(areas) - 1 and big[hi + 1]:
        hi += 1
    return lo, hi


def check_table(vox: Voxels) -> dict[str, Any]:
    """A flat top (the largest slice of the upper 15 %, in a slab at the very top at least twice as wide as thick:
    a lamp's shade is not) much larger than the mid-height slices, which are legs or a pedestal under it."""
    solid, nz = vox.solid, vox.solid.shape[2]
    areas = _areas(solid)
    top_band = _layers(nz, 0.85, 1.0)
    k = top_band.start + int(np.argmax(areas[top_band]))
    lo, hi = _slab(areas, k)
    top = np.argwhere(solid[:, :, k]).astype(float)
    centre = top.mean(axis=0)
    s = _supports(solid, _layers(nz, 0.3, 0.65), centre, _reach(top, centre))
    ratio = float(areas[k]) / max(s["support_area"], 1.0)
    thickness = (hi - lo + 1) / nz
    flatness = _reach(top, centre) / (hi - lo + 1)
    found = {"top_area": int(areas[k]), "top_thickness": round(thickness, 3), "top_flatness": round(flatness, 2),
             "top_to_support_area": round(ratio, 2),
             **s, "legs": s["supports"] if s["supports"] >= 3 else 0}
    if hi < nz - 1 - max(1, int(0.03 * nz)) or flatness < 2.0:
        return {**found, "passed": False, "reason": f"no flat top: the widest upper slab is {flatness:.1f}x as wide as "
                                                     f"thick and ends {1 - (hi + 1) / nz:.0%} below the top"}
    if ratio < 3.0 or s["support_reach"] > 1.1:
        return {**found, "passed": False, "reason": f"no top over the supports: the upper slice is {ratio:.1f}x the "
                                                     f"mid-height one, which reaches {s['support_reach']:.1f}x as far"}
    ok, what = _held_up(s, float(areas[k]))
    return {**found, "passed": ok, "reason": f"top {ratio:.1f}x the mid-height slice, on {what}"}


def _side_offset(solid: np.ndarray, seat: np.ndarray, above: slice) -> tuple[float, float]:
    """How far the part above the seat sits to one side: its centroid's offset from the seat centroid as a fraction
    of the seat's extent in that direction, and the part's share of the object's voxels."""
    centre = seat.mean(axis=0)
    part = solid[:, :, above]
    pix = np.argwhere(part)
    if len(pix) == 0:
        return 0.0, 0.0
    offset = pix[:, :2].mean(axis=0) - centre
    length = float(np.linalg.norm(offset))
    if length < 1e-9:
        return 0.0, float(len(pix) / solid.sum())
    extent = float(((seat - centre) @ (offset / length)).max()) + 0.5
    return length / extent, float(len(pix) / solid.sum())


def check_chair(vox: Voxels) -> dict[str, Any]:
    """A seat (the largest slice between 15 % and 75 % of the height) on legs or a narrow support, with a back above
    it on one side (judged on the upper half of what rises above the seat, so arms do not pull it to the middle)."""
    solid, nz = vox.solid, vox.solid.shape[2]
    areas = _areas(solid)
    band = _layers(nz, 0.15, 0.75)
    k = band.start + int(np.argmax(areas[band]))
    seat = np.argwhere(solid[:, :, k]).astype(float)
    centre = seat.mean(axis=0)
    s = _supports(solid, slice(max(int(0.2 * k), 0), max(int(np.ceil(0.7 * k)), 1)), centre, _reach(seat, centre))
    thin = np.nonzero(areas[k:] < 0.5 * areas[k])[0]
    start = k + int(thin[0]) if len(thin) else nz
    offset, share = _side_offset(solid, seat, slice((start + nz) // 2, nz))
    height = (nz - start) / nz
    found = {"seat_height": round(k / nz, 3), "seat_area": int(areas[k]), **s,
             "legs": s["supports"] if s["supports"] >= 3 else 0, "back_height": round(height, 3),
             "back_offset": round(offset, 3), "back_share": round(share, 3)}
    ok, what = _held_up(s, float(areas[k]))
    if not ok:
        return {**found, "passed": False, "reason": f"no legs under the seat: {what}"}
    if height < 0.15 or offset < 0.4 or share < 0.05:
        return {**found, "passed": False, "reason": f"seat on {what}, but no back on one side (offset {offset:.2f} "
                                                     f"of the seat, {height:.0%} of the height and {share:.0%} of "
                                                     f"the volume above it)"}
    return {**found, "passed": True, "reason": f"seat on {what}, back on one side (offset {offset:.2f} of the seat)"}


def check_shape(mesh: "trimesh.Trimesh", shape: str) -> dict[str, Any]:
    """The geometric check of class ``shape`` on ``mesh``: ``passed`` (None for classes without one), a one-line
    ``reason`` and the measured numbers."""
    if shape not in CHECKED:
        return {"shape": shape, "passed": None, "reason": "no geometric check for this class"}
    if len(mesh.faces) == 0:
        return {"shape": shape, "passed": False, "reason": "empty mesh"}
    vox = voxelise(mesh)
    found = check_mug(vox, mesh) if shape == "mug" else check_table(vox) if shape == "table" else check_chair(vox)
    return {"shape": shape, **found}
