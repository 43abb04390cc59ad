"""Ensemble metrics of GeoDiff / torsional diffusion: coverage (COV) and matching (MAT) of generated conformers
against a reference ensemble of the same molecule, recall (-R, over references) and precision (-P, over generated).

The RMSD of a pair is the heavy-atom RMSD after the best symmetry-aware alignment (RDKit ``GetBestRMS``, as
``metrics.heavy_rmsd``). From the matrix ``rmsd[g, r]`` of one molecule:

- COV-R: fraction of references r with ``min_g rmsd[g, r] < threshold``; MAT-R: mean over r of ``min_g rmsd[g, r]``;
- COV-P: fraction of generated g with ``min_r rmsd[g, r] < threshold``; MAT-P: mean over g of ``min_r rmsd[g, r]``.

The threshold defaults per molecule: 0.5 A up to 9 heavy atoms (QM9), 0.75 A above (GEOM-Drugs, torsional
diffusion). Each molecule gets K = 2x its number of references generated (``num_to_generate``). Scores are
aggregated over molecules as mean and median; a molecule without generated conformers has COV-R 0 and MAT-R +inf
(counted as ``failed``; in the median, out of the mean), and no precision.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    from rdkit import Chem

    Conformers = Union[Chem.Mol, Sequence[Chem.Mol], np.ndarray]

SMALL_HEAVY_ATOMS = 9
THRESHOLD_SMALL = 0.5
THRESHOLD_LARGE = 0.75
MAX_MATCHES = 10000
SCORE_KEYS = ("cov_r", "mat_r", "cov_p", "mat_p")


@dataclass
class EnsembleScores:
    """COV/MAT recall and precision of one molecule's generated ensemble; COV as fractions, MAT in Angstrom."""

    name: str
    n_generated: int
    n_reference: int
    threshold: float
    cov_r: float
    mat_r: float
    cov_p: float
    mat_p: float


def default_threshold(num_heavy_atoms: int) -> float:
    """The coverage threshold of the literature: 0.5 A for QM9-sized molecules (<= 9 heavy atoms), else 0.75 A."""
    return THRESHOLD_SMALL if num_heavy_atoms <= SMALL_HEAVY_ATOMS else THRESHOLD_LARGE


def num_to_generate(n_references: int, factor: int = 2) -> int:
    """How many conformers to generate for a molecule with ``n_references`` reference conformers (2x by default)."""
    if n_references < 1 or factor < 1:
        raise ValueError("need at least one reference conformer and a factor of at least 1")
    return factor * n_references


def _heavy_conformers(confs: Conformers, mol: Chem.Mol | None) -> list[tuple[Chem.Mol, int]]:
    """(heavy-atom molecule, conformer id) for every conformer of ``confs``; arrays [K, N, 3] or [N, 3] take the
    atoms of ``mol`` in the same order."""
    from rdkit import Chem

    from .io import with_conformers

    if isinstance(confs, np.ndarray):
        if mol is None:
            raise ValueError("coordinate arrays need the molecule (same atom order) as mol=")
        confs = with_conformers(mol, confs.reshape(-1, *confs.shape[-2:]))
    mols = [confs] if isinstance(confs, Chem.Mol) else list(confs)
    out = []
    for m in mols:
        heavy = Chem.RemoveHs(Chem.Mol(m), sanitize=False)
        try:  # one aromaticity model on both sides: MMFF's setup rewrites the flags in place (a fused pyrimidinone
            Chem.SanitizeMol(heavy)  # loses them), and then no substructure match aligns it to its reference
        except Exception:
            pass  # an unsanitizable record keeps its own flags
        out.extend((heavy, c.GetId()) for c in heavy.GetConformers())
    return out


def rmsd_matrix(generated: Conformers, references: Conformers, *, mol: Chem.Mol | None = None,
                max_matches: int = MAX_MATCHES) -> np.ndarray:
    """Heavy-atom RMSD [n_generated, n_references] after symmetry-aware alignment, for conformers of one molecule.

    Either side is a molecule with conformers, a list of such molecules or a coordinate array [K, N, 3] in the atom
    order of ``mol`` (hydrogens included when ``mol`` has them).
    """
    from rdkit.Chem import rdMolAlign

    gen = _heavy_conformers(generated, mol)
    ref = _heavy_conformers(references, mol)
    out = np.empty((len(gen), len(ref)))
    for i, (g, gid) in enumerate(gen):
        for j, (r, rid) in enumerate(ref):
            out[i, j] = rdMolAlign.GetBestRMS(g, r, gid, rid, maxMatches=max_matches)
    return out


def scores_from_matrix(rmsd: np.ndarray, threshold: float, name: str = "") -> EnsembleScores:
    """COV-R, MAT-R, COV-P, MAT-P of one molecule from its RMSD matrix [n_generated, n_references]."""
    rmsd = np.asarray(rmsd, dtype=float)
    n_gen, n_ref = rmsd.shape
    if n_ref == 0:
        raise ValueError(f"{name or 'molecule'}: no reference conformers to score against")
    if n_gen == 0:
        return EnsembleScores(name, 0, n_ref, threshold, 0.0, math.inf, math.nan, math.nan)
    recall, precision = rmsd.min(axis=0), rmsd.min(axis=1)
    return EnsembleScores(name, n_gen, n_ref, threshold, float((recall < threshold).mean()), float(recall.mean()),
                          float((precision < threshold).mean()), float(precision.mean()))


def ensemble_scores(generated: Conformers, references: Conformers, *, mol: Chem.Mol | None = None,
                    threshold: float | None = None, name: str = "", max_matches: int = MAX_MATCHES) -> EnsembleScores:
    """COV/MAT recall and precision of generated against reference conformers of one molecule.

    ``threshold`` defaults to ``default_threshold`` of the molecule's heavy-atom count.
    """
    rmsd = rmsd_matrix(generated, references, mol=mol, max_matches=max_matches)
    if threshold is None:
        threshold = default_threshold(_num_heavy(references, mol)) if rmsd.shape[1] else math.nan
    return scores_from_matrix(rmsd, threshold, name)


def _num_heavy(confs: Conformers, mol: Chem.Mol | None) -> int:
    """Heavy atoms of the molecule behind ``confs`` (``mol`` for arrays)."""
    from rdkit import Chem

    if isinstance(confs, np.ndarray) or mol is not None:
        return int(mol.GetNumHeavyAtoms())
    first = confs if isinstance(confs, Chem.Mol) else confs[0]
    return int(first.GetNumHeavyAtoms())


def aggregate(scores: Sequence[EnsembleScores]) -> dict[str, float]:
    """Mean and median over molecules of each score (``cov_r_mean``, ``mat_r_median``, ...), ``n`` and ``failed``.

    A failed molecule (no generated conformer) enters the recall medians (MAT-R as +inf) but not the means of MAT-R;
    precision is averaged over the molecules that have it.
    """
    out: dict[str, float] = {"n": len(scores), "failed": sum(s.n_generated == 0 for s in scores)}
    for key in SCORE_KEYS:
        v = np.asarray([getattr(s, key) for s in scores], dtype=float)
        finite = v[np.isfinite(v)]
        median_of = v[~np.isnan(v)]
        out[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
        out[f"{key}_median"] = float(np.median(median_of)) if median_of.size else math.nan
    return out


EnsembleGenerator = Callable[[list["Chem.Mol"], int], list["Chem.Mol"]]


def ensemble_benchmark(references: Sequence[Chem.Mol], methods: dict[str, EnsembleGenerator], *, factor: int = 2,
                       threshold: float | None = None) -> dict[str, dict[str, float]]:
    """Score each method (``(molecules without conformers, k) -> molecules with k conformers``, as
    ``metrics.benchmark`` takes) on reference ensembles (one molecule per item, all its conformers on it).

    Each molecule gets ``num_to_generate(n_references, factor)`` conformers; molecules needing the same K go to the
    method in one call. Returns per method ``aggregate`` plus ``sec_per_conformer``.
    """
    from rdkit import Chem

    inputs, ks = [], []
    for ref in references:
        m = Chem.Mol(ref)
        m.RemoveAllConformers()
        inputs.append(m)
        ks.append(num_to_generate(ref.GetNumConformers(), factor))
    results = {}
    for method_name, method in methods.items():
        generated: list = [None] * len(inputs)
        t0 = time.perf_counter()
        for k in sorted(set(ks)):
            idx = [i for i, kk in enumerate(ks) if kk == k]
            for i, out in zip(idx, method([inputs[i] for i in idx], k)):
                generated[i] = out
        seconds = time.perf_counter() - t0
        scores = [ensemble_scores(g if g is not None else [], r, threshold=threshold, name=_name(r))
                  for g, r in zip(generated, references)]
        stats = aggregate(scores)
        stats["sec_per_conformer"] = seconds / max(1, sum(ks))
        results[method_name] = stats
    return results


def _name(mol: Chem.Mol) -> str:
    """The ``_Name`` of a molecule, or ""."""
    return mol.GetProp("_Name") if mol.HasProp("_Name") else ""


def format_ensemble_table(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table of ``ensemble_benchmark`` results: COV in %, MAT in Angstrom, mean / median."""
    head = (f"{'method':<24}{'n':>5}{'COV-R %':>14}{'MAT-R A':>14}{'COV-P %':>14}{'MAT-P A':>14}"
            f"{'failed':>8}{'ms/conf':>9}")
    lines = [head, "-" * len(head), f"{'':<29}{'mean / median':>14}{'mean / median':>14}{'mean / median':>14}"
                                    f"{'mean / median':>14}"]
    for method_name, r in results.items():
        cells = [f"{100 * r['cov_r_mean']:.1f} / {100 * r['cov_r_median']:.1f}",
                 f"{r['mat_r_mean']:.3f} / {r['mat_r_median']:.3f}",
                 f"{100 * r['cov_p_mean']:.1f} / {100 * r['cov_p_median']:.1f}",
                 f"{r['mat_p_mean']:.3f} / {r['mat_p_median']:.3f}"]
        lines.append(f"{method_name:<24}{r['n']:>5}" + "".join(f"{c:>14}" for c in cells)
                     + f"{r['failed']:>8}{1000 * r.get('sec_per_conformer', math.nan):>9.1f}")
    return "\n".join(lines)
