"""A labelled procedural shape set built from trimesh primitives (chairs, tables, lamps, mugs, airplanes, ...).

Every shape is one watertight-ish mesh made by concatenating primitive parts with random proportions, z up, standing
on z = 0 and roughly centred on the z axis. Each mesh carries per-face part ids in ``mesh.metadata["face_part"]``
(int array [F]) and the part names in ``mesh.metadata["part_names"]`` (list, index = part id). The text-to-3D domain
reuses this module, so ``CLASSES``, ``make_shape`` and ``labelled_set`` are a fixed API.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh
from trimesh import creation

CLASSES: tuple[str, ...] = ("chair", "table", "lamp", "mug", "airplane", "bottle", "shelf")

_SECTIONS = 24

Part = tuple[trimesh.Trimesh, str]


def _box(extents: tuple[float, float, float], centre: tuple[float, float, float]) -> trimesh.Trimesh:
    """An axis-aligned box of the given extents centred at ``centre``."""
    return creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


def _cyl(radius: float, z0: float, z1: float, xy: tuple[float, float] = (0.0, 0.0)) -> trimesh.Trimesh:
    """A vertical cylinder from height ``z0`` to ``z1`` at horizontal position ``xy``."""
    return creation.cylinder(radius=radius, segment=[[xy[0], xy[1], z0], [xy[0], xy[1], z1]], sections=_SECTIONS)


def _frustum(r0: float, r1: float, z0: float, z1: float) -> trimesh.Trimesh:
    """A vertical truncated cone with radius ``r0`` at ``z0`` and ``r1`` at ``z1`` (a cylinder with its ends rescaled)."""
    mesh = creation.cylinder(radius=1.0, height=1.0, sections=_SECTIONS)
    v = mesh.vertices.copy()
    top = v[:, 2] > 0
    v[:, :2] *= np.where(top, r1, r0)[:, None]
    v[:, 2] = np.where(top, z1, z0)
    return trimesh.Trimesh(vertices=v, faces=mesh.faces, process=False)


def _tube(r_in: float, r_out: float, z0: float, z1: float) -> trimesh.Trimesh:
    """A vertical hollow cylinder (inner radius ``r_in``, outer ``r_out``) from ``z0`` to ``z1``."""
    return creation.annulus(r_min=r_in, r_max=r_out, segment=[[0, 0, z0], [0, 0, z1]], sections=_SECTIONS)


def _assemble(parts: list[Part]) -> trimesh.Trimesh:
    """Concatenate parts into one mesh and record per-face part ids and part names in its metadata."""
    names: list[str] = []
    for _, name in parts:
        if name not in names:
            names.append(name)
    mesh = trimesh.util.concatenate([m for m, _ in parts])
    face_part = np.concatenate([np.full(len(m.faces), names.index(n), dtype=np.int64) for m, n in parts])
    mesh.metadata["face_part"] = face_part
    mesh.metadata["part_names"] = names
    return mesh


def _legs(rng: np.random.Generator, half_x: float, half_y: float, height: float, thick: float, round_legs: bool) -> list[Part]:
    """Four legs at the corners of a rectangle of half sizes ``half_x`` x ``half_y``, from the floor to ``height``."""
    parts: list[Part] = []
    inset = thick * rng.uniform(0.6, 1.2)
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (half_x - inset), sy * (half_y - inset)
            if round_legs:
                parts.append((_cyl(thick / 2, 0.0, height, (x, y)), "leg"))
            else:
                parts.append((_box((thick, thick, height), (x, y, height / 2)), "leg"))
    return parts


def _chair(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    seat_h, seat_t = rng.uniform(0.4, 0.55), rng.uniform(0.04, 0.08)
    back_h, back_t = rng.uniform(0.35, 0.7), rng.uniform(0.03, 0.07)
    leg_t = rng.uniform(0.03, 0.06)
    parts = _legs(rng, w / 2, d / 2, seat_h, leg_t, bool(rng.random() < 0.5))
    parts.append((_box((w, d, seat_t), (0, 0, seat_h + seat_t / 2)), "seat"))
    top = seat_h + seat_t
    parts.append((_box((w, back_t, back_h), (0, d / 2 - back_t / 2, top + back_h / 2)), "back"))
    if rng.random() < 0.4:
        arm_h = rng.uniform(0.15, 0.25)
        for sx in (-1, 1):
            parts.append((_box((0.04, d * 0.9, 0.04), (sx * (w / 2 - 0.02), 0, top + arm_h)), "arm"))
            parts.append((_box((0.03, 0.03, arm_h), (sx * (w / 2 - 0.02), -d * 0.4, top + arm_h / 2)), "arm"))
    return parts


def _table(rng: np.random.Generator) -> list[Part]:
    h, top_t = rng.uniform(0.55, 0.8), rng.uniform(0.03, 0.07)
    parts: list[Part]
    if rng.random() < 0.6:
        w, d = rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.9)
        parts = _legs(rng, w / 2, d / 2, h, rng.uniform(0.04, 0.08), bool(rng.random() < 0.4))
        parts.append((_box((w, d, top_t), (0, 0, h + top_t / 2)), "top"))
    else:
        r = rng.uniform(0.35, 0.6)
        parts = [
            (_cyl(rng.uniform(0.2, 0.45) * r, 0.0, 0.03), "base"),
            (_cyl(rng.uniform(0.04, 0.08), 0.03, h), "leg"),
            (_cyl(r, h, h + top_t), "top"),
        ]
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    base_r, base_h = rng.uniform(0.1, 0.2), rng.uniform(0.02, 0.06)
    pole_h, pole_r = rng.uniform(0.4, 0.9), rng.uniform(0.01, 0.025)
    shade_h = rng.uniform(0.15, 0.3)
    r_bottom, r_top = rng.uniform(0.12, 0.25), rng.uniform(0.05, 0.12)
    if rng.random() < 0.5:
        parts = [(_cyl(base_r, 0.0, base_h), "base")]
    else:
        parts = [(_frustum(base_r, base_r * 0.4, 0.0, base_h * 2), "base")]
    parts.append((_cyl(pole_r, base_h, base_h + pole_h), "pole"))
    z = base_h + pole_h - shade_h * rng.uniform(0.3, 0.7)
    parts.append((_frustum(r_bottom, r_top, z, z + shade_h), "shade"))
    return parts


def _mug(rng: np.random.Generator) -> list[Part]:
    r, h = rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.0)
    wall = rng.uniform(0.03, 0.06)
    parts: list[Part] = [(_tube(r - wall, r, wall, h), "body"), (_cyl(r, 0.0, wall), "body")]
    major, minor = rng.uniform(0.15, 0.3) * h, rng.uniform(0.025, 0.05)
    rot = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    move = trimesh.transformations.translation_matrix([r, 0, h * rng.uniform(0.45, 0.55)])
    torus = creation.torus(major, minor, major_sections=24, minor_sections=12, transform=move @ rot)
    outside = torus.triangles_center[:, 0] > r - wall / 2
    handle = torus.submesh([np.nonzero(outside)[0]], append=True)
    parts.append((handle, "handle"))
    return parts


def _airplane(rng: np.random.Generator) -> list[Part]:
    length, radius = rng.uniform(1.6, 2.4), rng.uniform(0.08, 0.14)
    span, chord = rng.uniform(1.4, 2.4), rng.uniform(0.25, 0.45)
    z = radius
    along_x = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0])
    body = creation.capsule(height=length - 2 * radius, radius=radius, count=[16, 16])
    body.apply_transform(trimesh.transformations.translation_matrix([0, 0, z]) @ along_x)
    wing_x = rng.uniform(-0.15, 0.1) * length
    tail_x = -length / 2 + chord * 0.4
    tail_span, fin_h = span * rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.4)
    parts: list[Part] = [
        (body, "fuselage"),
        (_box((chord, span, 0.03), (wing_x, 0, z)), "wing"),
        (_box((chord * 0.6, tail_span, 0.02), (tail_x, 0, z + radius * 0.5)), "tail"),
        (_box((chord * 0.6, 0.02, fin_h), (tail_x, 0, z + radius + fin_h / 2)), "tail"),
    ]
    if rng.random() < 0.6:
        eng_r, eng_l = radius * rng.uniform(0.4, 0.6), chord * rng.uniform(0.8, 1.2)
        for sy in (-1, 1):
            eng = creation.cylinder(radius=eng_r, height=eng_l, sections=16)
            eng.apply_transform(trimesh.transformations.translation_matrix([wing_x, sy * span * 0.28, z - eng_r - 0.02]) @ along_x)
            parts.append((eng, "engine"))
    return parts


def _bottle(rng: np.random.Generator) -> list[Part]:
    r, h = rng.uniform(0.15, 0.3), rng.uniform(0.5, 0.9)
    neck_r, neck_h = r * rng.uniform(0.25, 0.45), rng.uniform(0.12, 0.3)
    shoulder_h = rng.uniform(0.08, 0.2)
    parts: list[Part] = [
        (_cyl(r, 0.0, h), "body"),
        (_frustum(r, neck_r, h, h + shoulder_h), "body"),
        (_cyl(neck_r, h + shoulder_h, h + shoulder_h + neck_h), "neck"),
    ]
    if rng.random() < 0.5:
        top = h + shoulder_h + neck_h
        parts.append((_cyl(neck_r * 1.15, top, top + rng.uniform(0.03, 0.06)), "cap"))
    return parts


def _shelf(rng: np.random.Generator) -> list[Part]:
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(0.8, 1.8)
    t = rng.uniform(0.02, 0.04)
    n_boards = int(rng.integers(3, 6))
    parts: list[Part] = [
        (_box((t, d, h), (-w / 2 + t / 2, 0, h / 2)), "side"),
        (_box((t, d, h), (w / 2 - t / 2, 0, h / 2)), "side"),
    ]
    for z in np.linspace(t / 2, h - t / 2, n_boards):
        parts.append((_box((w - 2 * t, d, t), (0, 0, float(z))), "board"))
    if rng.random() < 0.5:
        parts.append((_box((w, t / 2, h), (0, d / 2 - t / 4, h / 2)), "back"))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "chair": _chair,
    "table": _table,
    "lamp": _lamp,
    "mug": _mug,
    "airplane": _airplane,
    "bottle": _bottle,
    "shelf": _shelf,
}


def make_shape(name: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """One random mesh of class ``name`` (parts concatenated, per-face part ids in ``metadata["face_part"]``)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown shape class {name!r}; choose one of {', '.join(CLASSES)}")
    return _assemble(_BUILDERS[name](rng))


def labelled_set(n_per_class: int, seed: int = 0) -> list[tuple[trimesh.Trimesh, str]]:
    """``n_per_class`` random meshes of every class in ``CLASSES``, as (mesh, class), deterministic given ``seed``.

    Shape i of class c uses its own generator seeded by (seed, class index, i), so the set for a larger
    ``n_per_class`` extends the smaller one instead of reshuffling it.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    out: list[tuple[trimesh.Trimesh, str]] = []
    for ci, name in enumerate(CLASSES):
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, ci, i])
            out.append((make_shape(name, rng), name))
    return out
