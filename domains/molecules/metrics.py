"""Conformer metrics and the RDKit ETKDG baseline.

The metric of GeoMol / torsional diffusion: heavy-atom RMSD after optimal symmetry-aware alignment (RDKit
``GetBestRMS``, symmetry matches capped by ``max_matches`` so a highly symmetric molecule cannot hang), per molecule the
minimum over its K conformers to the reference; reported as median and mean of that minimum and the coverage
(fraction of molecules with a conformer within ``threshold`` Angstrom). A molecule without any conformer counts as
not covered and enters the median as +inf.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

MAX_MATCHES = 10000


def heavy_rmsd(probe: Chem.Mol, ref: Chem.Mol, probe_id: int = -1, ref_id: int = -1,
               max_matches: int = MAX_MATCHES) -> float:
    """Heavy-atom RMSD of conformer ``probe_id`` of ``probe`` to ``ref`` after the best symmetry-aware alignment."""
    p = Chem.RemoveHs(Chem.Mol(probe, confId=probe_id) if probe_id >= 0 else Chem.Mol(probe), sanitize=False)
    r = Chem.RemoveHs(Chem.Mol(ref, confId=ref_id) if ref_id >= 0 else Chem.Mol(ref), sanitize=False)
    return float(rdMolAlign.GetBestRMS(p, r, maxMatches=max_matches))


def min_rmsd(conformers: Chem.Mol, ref: Chem.Mol, max_matches: int = MAX_MATCHES) -> float:
    """Minimum heavy-atom RMSD over all conformers of ``conformers`` to the reference (inf if there are none)."""
    ids = [c.GetId() for c in conformers.GetConformers()]
    if not ids:
        return math.inf
    return min(heavy_rmsd(conformers, ref, i, max_matches=max_matches) for i in ids)


def summarize(min_rmsds: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Median and mean (over molecules with a conformer) of per-molecule min RMSD, coverage at ``threshold``."""
    v = np.asarray(min_rmsds, dtype=float)
    finite = v[np.isfinite(v)]
    return {"n": int(v.size), "median": float(np.median(v)) if v.size else math.nan,
            "mean": float(finite.mean()) if finite.size else math.nan,
            "coverage": float((v < threshold).mean()) if v.size else math.nan,
            "failed": int((~np.isfinite(v)).sum())}


ZERO_SEED = 0xF00D
"""RDKit's seed used for ``seed`` 0: RDKit's ``EmbedMultipleConfs`` with ``randomSeed=0`` returns one conformer K
times (rdkit/rdkit#1738; measured with RDKit 2026.09.1), which made a K-conformer ETKDG baseline a 1-conformer one."""


def rdkit_seed(seed: int) -> int:
    """The ``randomSeed`` RDKit gets for ``seed``: the seed itself, except 0 (``ZERO_SEED``)."""
    return ZERO_SEED if seed == 0 else int(seed)


def etkdg_conformers(mol: Chem.Mol, k: int, seed: int = 0) -> Chem.Mol:
    """K ETKDGv3 conformers of ``mol`` (hydrogens added if missing; existing conformers dropped).

    If the default embedding yields fewer than K (strained QM9 cages), it is retried with random starting coordinates,
    RDKit's documented remedy, so the baseline is not penalised for a setting.
    """
    m = Chem.AddHs(Chem.Mol(mol), addCoords=False)
    m.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = rdkit_seed(seed)
    params.numThreads = 1
    AllChem.EmbedMultipleConfs(m, numConfs=k, params=params)
    if m.GetNumConformers() < k:
        m.RemoveAllConformers()
        params.useRandomCoords = True
        AllChem.EmbedMultipleConfs(m, numConfs=k, params=params)
    return m


Generator = Callable[[list[Chem.Mol], int], list[Chem.Mol]]


def benchmark(refs: Sequence[Chem.Mol], methods: dict[str, Generator], k: int = 5,
              threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Run each method (``(molecules without conformers, k) -> molecules with k conformers``) on the references.

    Returns per method the ``summarize`` dict plus ``sec_per_conformer`` (wall time of the method / (n * k)).
    """
    inputs = []
    for ref in refs:
        m = Chem.Mol(ref)
        m.RemoveAllConformers()
        inputs.append(m)
    results = {}
    for name, method in methods.items():
        t0 = time.perf_counter()
        out = method(inputs, k)
        seconds = time.perf_counter() - t0
        rmsds = [_scored(name, o, r) for o, r in zip(out, refs)]
        stats = summarize(rmsds, threshold)
        stats["sec_per_conformer"] = seconds / max(1, len(refs) * k)
        results[name] = stats
    return results


def _scored(method: str, out: Chem.Mol, ref: Chem.Mol) -> float:
    """``min_rmsd``, or a failure (inf) named on stderr when the method returned a different molecule graph (a bug
    to find, never a silent success)."""
    try:
        return min_rmsd(out, ref)
    except RuntimeError as exc:
        name = ref.GetProp("_Name") if ref.HasProp("_Name") else Chem.MolToSmiles(Chem.RemoveHs(ref))
        print(f"warning: {method} returned a molecule that does not match {name} ({exc}); counted as failed",
              file=sys.stderr)
        return math.inf


def etkdg_method(seed: int = 0) -> Generator:
    """ETKDGv3 as a ``benchmark`` method."""
    return lambda mols, k: [etkdg_conformers(m, k, seed) for m in mols]


def format_table(results: dict[str, dict[str, float]], threshold: float = 0.5) -> str:
    """A plain-text table of ``benchmark`` results, one row per method."""
    head = f"{'method':<30}{'n':>6}{'median A':>10}{'mean A':>9}{f'cov@{threshold}':>10}{'failed':>8}{'ms/conf':>10}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:<30}{r['n']:>6}{r['median']:>10.3f}{r['mean']:>9.3f}{100 * r['coverage']:>9.1f}%"
                     f"{r['failed']:>8}{1000 * r['sec_per_conformer']:>10.1f}")
    return "\n".join(lines)
