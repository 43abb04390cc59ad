"""Clean-up of marching-cubes meshes (keep the largest parts, fill small holes, orient, smooth) and a topology report.

The report counts connected components by shared vertices and gives each its Euler characteristic
``chi = V - E + F`` and its boundary loops ``b`` (independent cycles of the edges used by one face only). For an
orientable manifold part, ``genus = (2 - chi - b) / 2``: the closed-surface formula ``(2 - chi) / 2`` when ``b = 0``,
and the genus of the surface with its holes capped otherwise. A half-integer genus marks a non-manifold or
non-orientable part.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

TAUBIN_LAMBDA, TAUBIN_NU = 0.5, 0.53
"""Taubin's shrink / inflate steps (nu slightly above lambda, so the surface keeps its size)."""


def _colours(mesh) -> np.ndarray:
    """Per-vertex RGBA uint8 colours of ``mesh`` (opaque grey when it has none)."""
    if mesh.visual.kind == "vertex":
        return np.asarray(mesh.visual.vertex_colors, np.uint8)
    return np.full((len(mesh.vertices), 4), [200, 200, 200, 255], np.uint8)


def _build(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray):
    """A trimesh with exactly these arrays (no merging or reordering, so colours stay with their vertices)."""
    import trimesh

    return trimesh.Trimesh(vertices=vertices, faces=np.ascontiguousarray(faces, dtype=np.int64),
                           vertex_colors=colours, process=False)


def _edges(faces: np.ndarray) -> np.ndarray:
    """The directed edges [3F, 2] of the faces, face by face (edge k belongs to face k // 3)."""
    return faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def _edge_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges [E, 2] and, for each directed face edge, how many faces use its undirected edge."""
    ordered = np.sort(_edges(faces), axis=1)
    unique, inverse, counts = np.unique(ordered, axis=0, return_inverse=True, return_counts=True)
    return unique, counts[inverse.reshape(-1)]


def vertex_components(faces: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """Connected components of the faces by shared vertices: their number and a label per vertex."""
    e = _edges(faces)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_vertices, n_vertices))
    return connected_components(graph, directed=False)


def _cycle_rank(edges: np.ndarray) -> int:
    """Independent cycles of an undirected edge list (E - V + components): the boundary loops of a patch."""
    if len(edges) == 0:
        return 0
    nodes, flat = np.unique(edges, return_inverse=True)
    flat = flat.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(flat)), (flat[:, 0], flat[:, 1])), shape=(len(nodes), len(nodes)))
    return len(edges) - len(nodes) + connected_components(graph, directed=False)[0]


def _number(x: float) -> int | float:
    """An int when ``x`` is integral (JSON-friendly genus), else ``x``."""
    return int(round(x)) if abs(x - round(x)) < 1e-9 else float(x)


def mesh_report(mesh) -> dict[str, Any]:
    """Components, genus (summed over components, and of the part ``keep_largest`` keeps first; see the module
    docstring), Euler characteristic, boundary loops, faces, vertices and ``watertight`` (every edge in exactly two
    faces) of ``mesh``, JSON-ready."""
    faces = np.asarray(mesh.faces, np.int64)
    if len(faces) == 0:
        return {"components": 0, "genus": 0, "genus_largest": 0, "euler": 0, "boundary_loops": 0, "faces": 0,
                "vertices": 0, "watertight": False}
    used = np.unique(faces)
    n, labels = vertex_components(faces, len(mesh.vertices))
    undirected, per_edge = _edge_counts(faces)
    boundary = np.sort(_edges(faces)[per_edge == 1], axis=1)
    face_label = labels[faces[:, 0]]
    parts = np.unique(face_label)
    v_count = np.bincount(labels[used], minlength=n)
    chi = v_count - np.bincount(labels[undirected[:, 0]], minlength=n) + np.bincount(face_label, minlength=n)
    loops = np.zeros(n, int)
    for c in np.unique(labels[boundary[:, 0]]):
        loops[c] = _cycle_rank(boundary[labels[boundary[:, 0]] == c])
    genus = (2 - chi - loops) / 2
    closed, size = _part_sizes(mesh, face_label, n)
    first = np.lexsort((-size, ~closed))[0]
    return {"components": int(len(parts)), "genus": _number(genus[parts].sum()), "genus_largest": _number(genus[first]),
            "euler": int(chi[parts].sum()), "boundary_loops": int(loops.sum()), "faces": int(len(faces)),
            "vertices": int(len(used)), "watertight": bool(np.all(per_edge == 2))}


def report_line(report: dict[str, Any]) -> str:
    """The report in a few words: '1 component, genus 0, 7,056 faces, 3,530 vertices, watertight'."""
    if "error" in report:
        return f"no mesh ({report['error']})"
    comps = report["components"]
    shape = "watertight" if report["watertight"] else f"open ({report['boundary_loops']} boundary loops)"
    return (f"{comps} component{'s' if comps != 1 else ''}, genus {report['genus']}, {report['faces']:,} faces, "
            f"{report['vertices']:,} vertices, {shape}")


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """The boundary loops of consistently wound faces, each as vertices in the direction of their faces' edges."""
    _, per_edge = _edge_counts(faces)
    following: dict[int, list[int]] = {}
    for a, b in _edges(faces)[per_edge == 1]:
        following.setdefault(int(a), []).append(int(b))
    loops = []
    while following:
        start = next(iter(following))
        loop, here = [start], start
        while True:
            nxt = following[here].pop()
            if not following[here]:
                del following[here]
            if nxt == start:
                loops.append(loop)
                break
            if nxt not in following:
                break
            loop.append(nxt)
            here = nxt
    return loops


def fill_holes(mesh, max_edges: int):
    """``mesh`` with every boundary loop of at most ``max_edges`` edges closed by a fan around a new centre vertex
    (coloured with the loop's mean colour); larger openings are left as they are."""
    faces = np.asarray(mesh.faces, np.int64)
    holes = [loop for loop in boundary_loops(faces) if 3 <= len(loop) <= max_edges]
    if not holes:
        return mesh
    vertices, colours = np.asarray(mesh.vertices, float), _colours(mesh)
    new_v, new_c, new_f = [], [], []
    for k, loop in enumerate(holes):
        centre = len(vertices) + k
        ring = np.asarray(loop)
        new_v.append(vertices[ring].mean(0))
        new_c.append(colours[ring].astype(float).mean(0).round().astype(np.uint8))
        # The loop runs along its faces' edges a -> b; a cap face must use b -> a to be wound like its neighbours.
        new_f.append(np.stack([np.roll(ring, -1), ring, np.full(len(ring), centre)], 1))
    return _build(np.concatenate([vertices, np.stack(new_v)]), np.concatenate([faces, *new_f]),
                  np.concatenate([colours, np.stack(new_c)]))


def _part_sizes(mesh, face_label: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per component: whether it is closed, and its size (enclosed volume if closed, surface area if open)."""
    faces = np.asarray(mesh.faces, np.int64)
    _, per_edge = _edge_counts(faces)
    open_face = (per_edge != 2).reshape(-1, 3).any(1)
    closed = np.bincount(face_label, weights=open_face, minlength=n) == 0
    tri = np.asarray(mesh.vertices, float)[faces]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6
    volume = np.abs(np.bincount(face_label, weights=signed, minlength=n))
    area = np.bincount(face_label, weights=np.asarray(mesh.area_faces), minlength=n)
    return closed, np.where(closed, volume, area)


def keep_largest(mesh, count: int = 1):
    """The ``count`` largest components of ``mesh`` (0: all). Closed parts rank above open ones, closed parts by the
    volume they enclose and open ones by area, so a thin noisy sheet does not outrank the solid object."""
    faces = np.asarray(mesh.faces, np.int64)
    n, labels = vertex_components(faces, len(mesh.vertices))
    face_label = labels[faces[:, 0]]
    if count <= 0 or len(np.unique(face_label)) <= count:
        return mesh
    closed, size = _part_sizes(mesh, face_label, n)
    keep = np.lexsort((-size, ~closed))[:count]
    faces = faces[np.isin(face_label, keep)]
    used, faces = np.unique(faces, return_inverse=True)
    return _build(np.asarray(mesh.vertices)[used], faces.reshape(-1, 3), _colours(mesh)[used])


def clean_mesh(mesh, *, components: int = 1, max_hole: int = 100, smooth: int = 10):
    """Orient faces consistently, fill holes of at most ``max_hole`` edges, keep the ``components`` largest parts
    (0: all), turn every closed part outwards and apply ``smooth`` Taubin iterations; vertex colours are kept."""
    import trimesh

    mesh = _build(np.asarray(mesh.vertices, float), np.asarray(mesh.faces, np.int64), _colours(mesh))
    if len(mesh.faces) == 0:
        return mesh
    trimesh.repair.fix_winding(mesh)
    if max_hole >= 3:
        mesh = fill_holes(mesh, max_hole)
    mesh = keep_largest(mesh, components)
    trimesh.repair.fix_normals(mesh, multibody=True)
    if smooth > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=TAUBIN_LAMBDA, nu=TAUBIN_NU, iterations=smooth)
    return mesh
