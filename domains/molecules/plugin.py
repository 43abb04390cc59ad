"""The molecules domain as a polydiff plugin: 3D conformer ensembles for molecular graphs, trained on QM9.

Training batches are ragged (x0 is [N_atoms, 3], ``group`` maps atoms to molecules) with zero-centre-of-mass noise;
samples are SDF files with K conformers per molecule plus PNG previews; evaluation is the min-over-K heavy-atom RMSD to
the DFT geometry of test-split molecules, side by side with RDKit ETKDGv3.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polydiff.core.schedules import make_grid
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Batch, Domain

from .chem import featurize
from .data import ConformerDataset, collate_batch, qm9_subset
from .graph import com_free_noise
from .io import MolInput, from_smiles, read_sdf, with_conformers, write_sdf
from .metrics import benchmark, etkdg_method
from .sampling import etkdg_starts, sample_conformers, stereo_ok

if TYPE_CHECKING:
    from .network import ConformerNet

SHIPPED = Path(__file__).parent / "checkpoints" / "qm9"
DEMO_SMILES = {"lactonitrile": "C[C@H](O)C#N", "cyclopropanol": "OC1CC1", "N-methylacetamide": "CC(=O)NC",
               "3-hydroxypyridine": "Oc1cccnc1", "gamma-butyrolactone": "O=C1CCCO1"}
NETWORK_KEYS = ("scalars", "vectors", "layers", "lmax", "num_rbf", "rbf_max", "noise_dim", "edge_hidden")


def _presets() -> dict[str, dict[str, Any]]:
    diffusion = {"parameterization": "edm", "sigma_data": 1.4, "schedule": "edm",
                 "schedule_args": {"P_mean": -1.0, "P_std": 1.4}, "weighting": "edm", "cond_dropout": 0.0}
    # 19 NFE from ETKDG embeddings noised to 0.3 A (chosen on the validation split); from pure noise use --steps 25
    sample = {"sampler": "heun", "steps": 10, "grid": "karras", "sigma_min": 0.005, "sigma_max": 10.0,
              "init": "etkdg", "init_sigma": 0.3}
    quick = {
        "data": {"subsample": 10, "min_heavy": 0},
        "network": {"scalars": 32, "vectors": 8, "layers": 3, "lmax": 1},
        "diffusion": diffusion,
        "train": {"steps": 300, "batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, "log_every": 25, "ckpt_every": 100,
                  "warmup": 20, "grad_clip": 1.0},
        "sample": sample,
    }
    cpu = {  # the shipped checkpoint's recipe: all of QM9's train split, ~1 step/s on one CPU core
        "data": {"subsample": 1, "min_heavy": 0},
        "network": {"scalars": 64, "vectors": 16, "layers": 4, "lmax": 2},
        "diffusion": diffusion,
        "train": {"steps": 4500, "batch_size": 32, "lr": 1e-3, "ema_decay": 0.999, "log_every": 50, "ckpt_every": 500,
                  "warmup": 200, "grad_clip": 1.0},
        "sample": sample,
    }
    full = {
        "data": {"subsample": 1, "min_heavy": 0},
        "network": {"scalars": 128, "vectors": 32, "layers": 6, "lmax": 2},
        "diffusion": diffusion,
        "train": {"steps": 300000, "batch_size": 128, "lr": 5e-4, "ema_decay": 0.9995, "log_every": 100,
                  "ckpt_every": 5000, "warmup": 1000, "grad_clip": 1.0},
        "sample": sample,
    }
    return {"quick": quick, "cpu": cpu, "full": full}


def build_dataset(cfg: dict[str, Any], split: str) -> ConformerDataset:
    return ConformerDataset(qm9_subset(cfg), split, int(cfg.get("min_heavy", 0)), cfg.get("limit"))


def build_network(cfg: dict[str, Any]) -> ConformerNet:
    from .network import ConformerNet  # e3nn is imported only when a network is built (fast CLI start-up)

    return ConformerNet(**{k: v for k, v in cfg["network"].items() if k in NETWORK_KEYS})


def generate(run, n: int, *, sampler: str | None = None, steps: int | None = None,
             generator: torch.Generator | None = None, inputs: list[MolInput] | None = None, k: int = 5,
             mirror_fix: bool = True, progress: bool = False, init: str | None = None,
             init_sigma: float | None = None) -> dict[str, Any]:
    """K conformers for each usable input molecule (default: the first n test-split QM9 molecules).

    ``init`` (default: the run's ``sample.init``, else ``"noise"``): ``"noise"`` samples from pure noise down the run's
    grid; ``"etkdg"`` starts from K ETKDGv3 embeddings noised to ``init_sigma`` Angstrom (``sample.init_sigma``) and
    runs the same number of steps from there (SDEdit); molecules ETKDG cannot embed K times start from noise.
    """
    if inputs is None:
        test = build_dataset({**run.config["data"], "limit": n}, "test")
        inputs = [MolInput(f"qm9_{int(test.qm9.arrays['index'][m])}", _no_conf(test.qm9.mol(int(m))))
                  for m in test.mols]
    s = run.config["sample"]
    init = init or s.get("init", "noise")
    if init not in ("noise", "etkdg"):
        raise ValueError(f"unknown init {init!r}; use 'noise' or 'etkdg'")
    usable = [item for item in inputs if item.mol is not None]
    graphs = [featurize(item.mol) for item in usable]
    sigma_start = float(init_sigma or s.get("init_sigma", 0.3))
    if init == "etkdg" and not 0 < sigma_start <= s["sigma_max"]:
        raise ValueError(f"init_sigma must be in (0, {s['sigma_max']}] Angstrom; got {sigma_start}")
    method = sampler or s["sampler"]
    t0 = time.perf_counter()
    starts: list = [None] * len(usable)
    if init == "etkdg" and usable:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device if generator else "cpu"))
        starts = etkdg_starts([item.mol for item in usable], k, seed)
    confs: list = [None] * len(usable)
    for seeded in (True, False):
        idx = [i for i, a in enumerate(starts) if (a is not None) == seeded]
        if not idx:
            continue
        sigmas = make_grid(s["grid"], steps or s["steps"], s["sigma_min"], sigma_start, schedule=run.schedule,
                           device=run.device) if seeded else run.sigmas(steps)
        out = sample_conformers(run.denoiser, [graphs[i] for i in idx], k, sigmas, method, generator=generator,
                                device=run.device, mirror_fix=mirror_fix,
                                init=[starts[i] for i in idx] if seeded else None)
        for i, c in zip(idx, out):
            confs[i] = c
    seconds = time.perf_counter() - t0
    return {"molecules": [(item.name, with_conformers(item.mol, c)) for item, c in zip(usable, confs)],
            "errors": [(item.name, item.error) for item in inputs if item.mol is None],
            "stereo_ok": [sum(stereo_ok(p, g) for p in c) / k for c, g in zip(confs, graphs)],
            "init": init, "etkdg_started": sum(a is not None for a in starts),
            "sec_per_conformer": seconds / max(1, len(graphs) * k)}


def _no_conf(mol):
    mol.RemoveAllConformers()
    return mol


def save_samples(samples: dict[str, Any], out: Path, info: dict[str, Any]) -> list[Path]:
    """``out/<name>.sdf`` (K conformers with hydrogens) and ``out/<name>.png`` (a preview, first 16 molecules)."""
    from .preview import conformers_png

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (name, mol) in enumerate(samples["molecules"]):
        files.append(write_sdf(mol, out / f"{name}.sdf", name))
        if i < 16:
            files.append(conformers_png(mol, out / f"{name}.png", title=name))
    info["errors"] = {name: err for name, err in samples["errors"]}
    info["stereo_ok"] = {name: s for (name, _), s in zip(samples["molecules"], samples["stereo_ok"])}
    info["sec_per_conformer"] = samples["sec_per_conformer"]
    info["init"], info["etkdg_started"] = samples["init"], samples["etkdg_started"]
    return files


def evaluate(run, *, sampler: str | None = None, steps: int | None = None, n: int = 200,
             generator: torch.Generator | None = None, k: int = 5, min_heavy: int = 6,
             reference: Path | None = None, etkdg: bool = True, init: str | None = None,
             init_sigma: float | None = None, split: str = "test") -> dict[str, float]:
    """Min-over-K heavy-atom RMSD to reference geometries (a QM9 split, or a 3D SDF), model and ETKDGv3.

    Choose settings on ``split="val"``; the test split is for reporting. ``init``/``init_sigma`` as in ``generate``;
    ``model_etkdg_started`` is the fraction of molecules started from ETKDG embeddings.
    """
    if reference is not None:
        items = read_sdf(reference, need_3d=True)
        for item in items:
            if item.error:
                print(item.error)
        refs = [item.mol for item in items if item.mol is not None][:n]
    else:
        data = build_dataset({**run.config["data"], "min_heavy": min_heavy, "limit": n}, split)
        refs = [data.qm9.mol(int(m)) for m in data.mols]
    if not refs:
        raise ValueError("no usable reference molecules to evaluate on")
    stereo: list[float] = []
    started: list[int] = []

    def model_method(mols, kk):
        samples = generate(run, len(mols), sampler=sampler, steps=steps, generator=generator,
                           inputs=[MolInput(m.GetProp("_Name") if m.HasProp("_Name") else str(i), m)
                                   for i, m in enumerate(mols)], k=kk, init=init, init_sigma=init_sigma)
        stereo.extend(samples["stereo_ok"])
        started.append(samples["etkdg_started"])
        return [mol for _, mol in samples["molecules"]]

    methods = {"model": model_method}
    if etkdg:
        methods["etkdg"] = etkdg_method(0)
    results = benchmark(refs, methods, k=k)
    metrics: dict[str, float] = {}
    for name, r in results.items():
        for key in ("median", "mean", "coverage", "failed", "sec_per_conformer"):
            metrics[f"{name}_{key}"] = r[key]
    metrics["n_molecules"] = len(refs)
    metrics["model_stereo_ok"] = sum(stereo) / max(1, len(stereo))
    metrics["model_etkdg_started"] = sum(started) / len(refs)
    return metrics


def make_domain() -> Domain:
    """The molecules Domain: QM9 conformers with an E(3)-equivariant e3nn denoiser."""
    from .cli import add_commands

    return Domain(
        name="molecules",
        summary="3D conformer ensembles for molecular graphs (QM9, e3nn; vs. RDKit ETKDG)",
        presets=_presets(),
        build_dataset=build_dataset,
        build_network=build_network,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="model_median",
        lower_is_better=True,
        collate=collate_batch,
        noise=lambda batch: com_free_noise(batch.cond),
        cli=add_commands,
        shipped_run=SHIPPED,
        demo={"inputs": [from_smiles(smi, name) for name, smi in DEMO_SMILES.items()]},
        extras={"benchmark": benchmark, "etkdg_method": etkdg_method, "Batch": Batch},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
