"""Scoring conformers: min-over-K RMSD against single references, COV/MAT against ensembles, next to ETKDGv3."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from polydiff.plugins.domain import EvaluateRequest
from polydiff.plugins.errors import OptionError

from .data import build_dataset
from .generation import no_conformers, generate
from .io import MolInput, unique_names
from .plugin import EvaluateOptions, SampleOptions

if TYPE_CHECKING:
    from rdkit import Chem


def reference_molecules(run, opts: EvaluateOptions, n: int) -> list[Chem.Mol]:
    """The first ``n`` reference molecules with their conformers: the ``--reference`` SDF grouped into ensembles
    (unusable records named on stderr), else the run's data split; explicit hydrogens, stereo from 3D."""
    from rdkit import Chem

    if opts.reference is None:
        return build_dataset({**run.config["data"], "min_heavy": opts.min_heavy, "limit": n}, opts.split).references()
    from .io import read_sdf_groups

    items = read_sdf_groups(opts.reference)
    for item in items:
        if item.error:
            print(f"skipped {item.name}: {item.error}", file=sys.stderr)
    refs = []
    for item in [i for i in items if i.mol is not None][:n]:
        mol = Chem.AddHs(item.mol, addCoords=True)
        Chem.AssignStereochemistryFrom3D(mol, confId=mol.GetConformers()[0].GetId())
        refs.append(mol)
    if not refs:
        raise OptionError("--reference", "no usable reference molecules to evaluate on")
    return refs


class ModelMethod:
    """The run as a ``benchmark`` / ``ensemble_benchmark`` method (molecules without conformers, k) -> molecules with
    k conformers (none where refused), keeping the counts of the sample rule across calls."""

    def __init__(self, run, request: EvaluateRequest) -> None:
        self.run, self.request, opts = run, request, request.options
        self.options = SampleOptions(init=opts.init, init_sigma=opts.init_sigma, no_validate=opts.no_validate,
                                     relax_iters=opts.relax_iters)
        self.stereo: list[float] = []
        self.counts = {"etkdg_started": 0, "refused": 0, "out_of_distribution": 0, "relaxed": 0, "dropped": 0,
                       "fallbacks": 0}

    def __call__(self, mols: list[Chem.Mol], k: int) -> list[Chem.Mol]:
        from rdkit import Chem

        names = unique_names([m.GetProp("_Name") if m.HasProp("_Name") else str(i) for i, m in enumerate(mols)])
        inputs = [MolInput(name, m) for name, m in zip(names, mols)]
        samples = generate(self.run, self.request.sample(k, None, self.options), inputs)
        meta, c = samples.meta, self.counts
        self.stereo.extend(meta["stereo_ok"].values())
        c["etkdg_started"] += meta["etkdg_started"]
        c["refused"] += len(meta["errors"])
        c["out_of_distribution"] += len(meta["out_of_distribution"])
        c["relaxed"] += meta.get("n_relaxed", 0)
        c["dropped"] += meta.get("n_dropped", 0)
        c["fallbacks"] += len(meta.get("fallbacks", []))
        made = dict(samples["molecules"])
        return [made.get(name, no_conformers(Chem.Mol(m))) for name, m in zip(names, mols)]


MIN_RMSD_KEYS = ("median", "mean", "coverage", "failed", "sec_per_conformer")
ENSEMBLE_KEYS = tuple(f"{s}_{a}" for s in ("cov_r", "mat_r", "cov_p", "mat_p") for a in ("mean", "median")) + (
    "failed", "sec_per_conformer")


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """The model next to ETKDGv3 against reference geometries (the ``--reference`` SDF, else the run's test split).

    References with several conformers per molecule (ensembles): COV-R, MAT-R, COV-P, MAT-P (mean and median over
    molecules), K = ``--k-factor`` x the ensemble's size, threshold ``--threshold`` or the per-molecule default
    (``ensembles``). Single references: min-over-K heavy-atom RMSD (median, mean, coverage at ``--threshold`` or
    0.5 A), K = ``--k``. Choose settings on ``--split val``; the test split is for reporting. ``model_etkdg_started``
    is the fraction of molecules started from ETKDG embeddings; ``model_relaxed`` / ``model_dropped`` count
    conformers repaired or dropped by validation, ``model_fallbacks`` molecules that fell back to ETKDG,
    ``model_refused`` molecules the run cannot sample (counted as failed)."""
    from .ensembles import ensemble_benchmark
    from .metrics import benchmark, etkdg_method

    opts = request.options
    refs = reference_molecules(run, opts, request.n or 200)
    model = ModelMethod(run, request)
    methods = {"model": model}
    if not opts.no_etkdg:
        methods["etkdg"] = etkdg_method(0)
    ensembles = any(r.GetNumConformers() > 1 for r in refs)
    if ensembles:
        results = ensemble_benchmark(refs, methods, factor=opts.k_factor, threshold=opts.threshold)
        keys = ENSEMBLE_KEYS
    else:
        results = benchmark(refs, methods, k=opts.k, threshold=opts.threshold or 0.5)
        keys = MIN_RMSD_KEYS
    metrics: dict[str, float] = {f"{name}_{key}": r[key] for name, r in results.items() for key in keys}
    metrics["n_molecules"] = len(refs)
    metrics["n_reference_conformers"] = sum(r.GetNumConformers() for r in refs)
    metrics["model_stereo_ok"] = sum(model.stereo) / max(1, len(model.stereo))
    metrics["model_etkdg_started"] = model.counts["etkdg_started"] / len(refs)
    metrics.update({f"model_{key}": v for key, v in model.counts.items() if key != "etkdg_started"})
    return metrics
