"""Point-cloud data sets: meshes (a folder, pybullet's random_urdfs, the procedural shapes) -> surface samples.

Clouds are sampled on the mesh surface with ``trimesh.sample.sample_surface`` (seeded per mesh), cached as npz under
``$POLYDIFF_CACHE/points/``, split into train / held-out by a hash of each item's name (deterministic, independent of
the other items) and normalised by a ``Normalization`` that is written next to every output.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import logging
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


if TYPE_CHECKING:
    import trimesh

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
BUILTIN_SETS = ("random_urdfs", "shapes")
NORMALIZATIONS = ("global", "shape")


def cache_dir() -> Path:
    """The points cache folder, ``$POLYDIFF_CACHE/points`` (default ``~/.cache/polydiff/points``)."""
    root = os.environ.get("POLYDIFF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "polydiff"))
    return Path(root) / "points"


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an npz atomically: to a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def is_held_out(name: str, fraction: float = 0.2) -> bool:
    """Deterministic split: an item is held out when the CRC32 of its name falls in the first ``fraction`` of 2^32."""
    return zlib.crc32(name.encode("utf-8")) < fraction * 2**32


# ---- meshes ---------------------------------------------------------------------------------------------------

@dataclass
class MeshLoad:
    """The meshes that loaded (with their names) and the files that were skipped, each with the reason."""

    meshes: list[trimesh.Trimesh] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def report(self) -> str:
        """One line: how many loaded, how many skipped and which (first few)."""
        line = f"loaded {len(self.meshes)} meshes, skipped {len(self.skipped)}"
        if self.skipped:
            shown = ", ".join(f"{n} ({why})" for n, why in self.skipped[:5])
            line += f": {shown}" + (" ..." if len(self.skipped) > 5 else "")
        return line


def _mesh_problem(path: Path) -> tuple[trimesh.Trimesh | None, str]:
    """(mesh, "") when ``path`` loads as a usable mesh, else (None, the reason)."""
    try:
        import trimesh

        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds of errors for broken files
        return None, f"unreadable: {type(exc).__name__}: {exc}"
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        return None, "no faces"
    if not np.isfinite(mesh.vertices).all() or not mesh.area > 0:
        return None, "non-finite vertices or zero surface area"
    return mesh, ""


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Load one mesh file as a single ``Trimesh`` (scenes are concatenated); ValueError if unusable, saying why."""
    mesh, why = _mesh_problem(Path(path))
    if mesh is None:
        raise ValueError(f"cannot use mesh {path}: {why}")
    return mesh


def load_folder(folder: str | Path, recursive: bool = True) -> MeshLoad:
    """Load every mesh file (OBJ, PLY, STL, OFF, GLB/GLTF) under ``folder``; failures are skipped and reported."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"mesh folder {root} does not exist or is not a folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise ValueError(f"no mesh files ({', '.join(MESH_SUFFIXES)}) found in {root}")
    out = MeshLoad()
    for path in files:
        name = str(path.relative_to(root))
        mesh, why = _mesh_problem(path)
        if mesh is None:
            out.skipped.append((name, why))
        else:
            out.meshes.append(mesh)
            out.names.append(name)
    log.info("%s: %s", root, out.report())
    if not out.meshes:
        raise ValueError(f"none of the {len(files)} mesh files in {root} could be loaded ({out.report()})")
    return out


def random_urdfs_folder() -> Path:
    """The folder of pybullet_data's 1,000 random URDF objects (``NNN/NNN.obj``)."""
    try:
        import pybullet_data
    except ImportError as exc:
        raise ValueError("the random_urdfs set needs pybullet, which ships its meshes: pip install 'polydiff[points-urdfs]'") from exc
    return Path(pybullet_data.getDataPath()) / "random_urdfs"


# ---- point sets -----------------------------------------------------------------------------------------------

@dataclass
class Normalization:
    """How clouds were normalised: ``global`` (one mean [3] and one std over all train points, as in PointFlow) or
    ``shape`` (each cloud centred on its bounding-box centre and scaled into the unit sphere)."""

    mode: str
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.mode!r}; choose 'global' (PointFlow) or 'shape'")

    @classmethod
    def fit(cls, mode: str, train: np.ndarray) -> "Normalization":
        """Fit on train clouds [M, N, 3] (only ``global`` has parameters)."""
        if mode == "global":
            pts = train.reshape(-1, 3).astype(np.float64)
            return cls(mode, pts.mean(0).tolist(), float(pts.std()))
        return cls(mode)

    def apply(self, clouds: np.ndarray) -> np.ndarray:
        """Normalise clouds [M, N, 3] (float32 out)."""
        c = clouds.astype(np.float64)
        if self.mode == "global":
            return ((c - np.asarray(self.mean)) / self.std).astype(np.float32)
        centre = (c.max(1, keepdims=True) + c.min(1, keepdims=True)) / 2
        c = c - centre
        radius = np.linalg.norm(c, axis=-1).max(1)[:, None, None]
        return (c / np.maximum(radius, 1e-12)).astype(np.float32)

    def invert(self, clouds: np.ndarray) -> np.ndarray:
        """Back to the data frame for ``global``; ``shape`` has no single inverse, so clouds are returned as they are."""
        if self.mode == "global":
            return (clouds.astype(np.float64) * self.std + np.asarray(self.mean)).astype(np.float32)
        return clouds

    def to_dict(self) -> dict:
        """JSON-ready description, with a sentence saying what was done."""
        text = ("global: x = (p - mean) / std, one mean per axis and one std over all train points (PointFlow)"
                if self.mode == "global" else "shape: each cloud centred on its bounding-box centre, scaled into the unit sphere")
        return {"mode": self.mode, "mean": self.mean, "std": self.std, "description": text}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        """Inverse of ``to_dict``."""
        return cls(d["mode"], list(d.get("mean", [0.0, 0.0, 0.0])), float(d.get("std", 1.0)))


@dataclass
class PointSet:
    """Clouds [M, N, 3] (raw, not normalised) with names, labels (-1 when unlabelled) and class names."""

    points: np.ndarray
    names: list[str]
    labels: np.ndarray
    classes: tuple[str, ...] = ()
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: np.ndarray | list[int]) -> "PointSet":
        """The items at ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        return PointSet(self.points[idx], [self.names[i] for i in idx], self.labels[idx], self.classes, self.source,
                        self.skipped)

    def split(self, part: str, fraction: float = 0.2) -> "PointSet":
        """``train`` or ``test`` (held out by ``is_held_out`` of each name) or ``all``."""
        if part == "all":
            return self
        if part not in ("train", "test"):
            raise ValueError(f"unknown split {part!r}; choose train, test or all")
        held = np.array([is_held_out(n, fraction) for n in self.names], dtype=bool)
        return self.subset(np.nonzero(held if part == "test" else ~held)[0])


def sample_clouds(meshes: list[trimesh.Trimesh], n_points: int, seed: int = 0) -> np.ndarray:
    """Surface samples [M, n_points, 3] (area-weighted, trimesh), mesh i seeded with ``seed + i``."""
    import trimesh

    out = np.empty((len(meshes), n_points, 3), dtype=np.float32)
    for i, mesh in enumerate(meshes):
        pts, _ = trimesh.sample.sample_surface(mesh, n_points, seed=seed + i)
        out[i] = pts
    return out


def _folder_key(root: Path, files: list[Path]) -> str:
    h = hashlib.sha1(str(root.resolve()).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cached(key: str, build) -> dict[str, np.ndarray]:
    path = cache_dir() / f"{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    _atomic_savez(path, **arrays)
    return arrays


def load_set(source: str, n_points: int = 2048, *, seed: int = 0, n_per_class: int = 100,
             limit: int | None = None, cache: bool = True) -> PointSet:
    """Build (or read from the cache) a point set: ``random_urdfs``, ``shapes`` (procedural, labelled) or a folder."""
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    if source == "shapes":
        from .shapes import CLASSES, labelled_set  # trimesh is imported only when shapes are built

        key = f"shapes-n{n_per_class}-s{seed}-p{n_points}"

        def build() -> dict[str, np.ndarray]:
            items = labelled_set(n_per_class, seed)
            names = [f"{c}_{i % n_per_class:04d}" for i, (_, c) in enumerate(items)]
            labels = np.array([CLASSES.index(c) for _, c in items], dtype=np.int64)
            return {"points": sample_clouds([m for m, _ in items], n_points, seed), "names": np.array(names),
                    "labels": labels, "skipped": np.zeros((0, 2), dtype=str)}

        arrays = _cached(key, build) if cache else build()
        return _to_set(arrays, CLASSES, "shapes", limit)
    folder = random_urdfs_folder() if source == "random_urdfs" else Path(source)
    if not folder.is_dir():
        raise ValueError(f"unknown data source {source!r}: give one of {', '.join(BUILTIN_SETS)} or a mesh folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise ValueError(f"no mesh files ({', '.join(MESH_SUFFIXES)}) found in {folder}")
    key = f"{'random_urdfs' if source == 'random_urdfs' else 'folder-' + _folder_key(folder, files)}-s{seed}-p{n_points}"

    def build_folder() -> dict[str, np.ndarray]:
        loaded = load_folder(folder)
        names = [Path(n).stem if source == "random_urdfs" else n for n in loaded.names]
        skipped = np.array(loaded.skipped, dtype=str).reshape(-1, 2)
        return {"points": sample_clouds(loaded.meshes, n_points, seed), "names": np.array(names),
                "labels": np.full(len(names), -1, dtype=np.int64), "skipped": skipped}

    arrays = _cached(key, build_folder) if cache else build_folder()
    return _to_set(arrays, (), "random_urdfs" if source == "random_urdfs" else str(folder), limit)


def _to_set(arrays: dict[str, np.ndarray], classes: tuple[str, ...], source: str, limit: int | None) -> PointSet:
    skipped = [(str(a), str(b)) for a, b in arrays["skipped"]]
    ps = PointSet(arrays["points"].astype(np.float32), [str(n) for n in arrays["names"]],
                  arrays["labels"].astype(np.int64), classes, source, skipped)
    if skipped:
        log.warning("%s: skipped %d meshes: %s", source, len(skipped), ", ".join(f"{a} ({b})" for a, b in skipped[:5]))
    return ps if limit is None else ps.subset(np.arange(min(limit, len(ps))))


def write_json(path: str | Path, payload: dict) -> None:
    """Write a JSON file atomically (sidecar metadata next to outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
