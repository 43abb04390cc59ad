"""The molecules domain as a polydiff plugin: 3D conformer ensembles for molecular graphs, trained on QM9.

Training batches are ragged (x0 is [N_atoms, 3], ``group`` maps atoms to molecules) with zero-centre-of-mass noise;
samples are SDF files with K conformers per molecule plus PNG previews; evaluation is the min-over-K heavy-atom RMSD to
the DFT geometry of test-split molecules, side by side with RDKit ETKDGv3.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polydiff.core.schedules import make_grid
from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Count, Domain, EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from .chem import featurize
from .data import ConformerDataset, collate_batch, qm9_subset
from .graph import com_free_noise
from .io import MolInput, read_sdf, with_conformers, write_sdf
from .metrics import benchmark, etkdg_method
from .sampling import etkdg_starts, sample_conformers, stereo_ok

if TYPE_CHECKING:
    from .network import ConformerNet

SHIPPED = Path(__file__).parent / "checkpoints" / "qm9"
DEMO_SMILES = {"lactonitrile": "C[C@H](O)C#N", "cyclopropanol": "OC1CC1", "N-methylacetamide": "CC(=O)NC",
               "3-hydroxypyridine": "Oc1cccnc1", "gamma-butyrolactone": "O=C1CCCO1"}
INITS = ("noise", "etkdg")


@dataclass
class Data:
    """The ``data`` section: which QM9 molecules train (``subsample`` s keeps those with (Index // 20) % s == 0, so
    the splits stay proportional; ``max_rows`` reads only the first rows of the CSVs)."""

    subsample: int = 1
    max_rows: int | None = None
    min_heavy: int = 0
    limit: int | None = None


@dataclass
class Network:
    """The ``network`` section: the e3nn conformer network (``network.ConformerNet``)."""

    scalars: int = 64
    vectors: int = 16
    layers: int = 4
    lmax: int = 2
    num_rbf: int = 16
    rbf_max: float = 5.0
    noise_dim: int = 64
    edge_hidden: int = 64


@dataclass
class SampleExtras:
    """Molecules' own keys of the ``sample`` section."""

    init: str = "noise"
    """``noise`` (pure diffusion from sigma_max) or ``etkdg`` (SDEdit from ETKDGv3 embeddings noised to init_sigma)."""
    init_sigma: float = 0.3
    """Noise level (Angstrom) the ETKDG starts are noised to."""

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, not {self.init!r}")


@dataclass
class SampleOptions:
    """What molecules' ``sample`` takes: the molecules (SMILES, .smi, .sdf) and how conformers start."""

    inputs: list[str] | None = option(None, "SMILES strings, .smi files ('SMILES name' lines) or .sdf files "
                                      "(coordinates ignored).", argument=True)
    smiles: list[str] | None = option(None, "A SMILES string (repeatable); stereo tags are respected.")
    input_files: list[Path] | None = option(None, "A .smi or .sdf file (repeatable; SDF coordinates are ignored).",
                                            flags=("--input",))
    molecules: int = option(4, "QM9 test-split molecules to use when no input is given.", min=1)
    no_mirror_fix: bool = option(False, "Keep conformers of wrong handedness.", flags=("--no-mirror-fix",))
    init: str | None = option(None, "noise (pure diffusion) or etkdg (SDEdit from ETKDGv3 embeddings); default: "
                              "the run's.", choices=INITS)
    init_sigma: float | None = option(None, "Noise level (Angstrom) the ETKDG starts are noised to; default: the "
                                      "run's.", min=1e-6)


@dataclass
class EvaluateOptions:
    """What molecules' ``evaluate`` takes beyond the shared options."""

    k: int = option(5, "Conformers per molecule.", flags=("-k", "--k"), min=1)
    reference: Path | None = option(None, "SDF of 3D reference geometries (default: QM9 test split).", exists=True)
    min_heavy: int = option(6, "QM9 test molecules with at least this many heavy atoms.", min=0)
    no_etkdg: bool = option(False, "Skip the RDKit ETKDGv3 baseline.", flags=("--no-etkdg",))
    init: str | None = option(None, "noise or etkdg; default: the run's.", choices=INITS)
    init_sigma: float | None = option(None, "Noise level (Angstrom) of ETKDG starts; default: the run's.", min=1e-6)
    split: str = option("test", "QM9 split without --reference: test, or val to choose settings.",
                        choices=("test", "val"))


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

    return ConformerNet(**cfg["network"])


def read_molecules(opts: SampleOptions) -> list[MolInput] | None:
    """The molecules named by the sample options (None when none are named); unusable ones are named on stderr and
    skipped, and if none is usable that is a usage error."""
    from .io import read_inputs

    if not (opts.inputs or opts.smiles or opts.input_files):
        return None
    items = read_inputs(opts.inputs or [], smiles=opts.smiles or [], files=opts.input_files or [])
    for item in items:
        if item.error:
            print(f"skipped {item.name}: {item.error}", file=sys.stderr)
    if not any(item.mol is not None for item in items):
        raise OptionError("--smiles/--input", "none of the inputs is a usable molecule")
    return items


def generate(run, request: SampleRequest, inputs: list[MolInput] | None = None) -> Samples:
    """``request.n`` conformers for each usable input molecule (``inputs``, else those the options name, else the
    first ``--molecules`` test-split QM9 molecules). ``init`` (default: the run's ``sample.init``): ``noise`` samples from pure noise down the run's grid;
    ``etkdg`` starts from K ETKDGv3 embeddings noised to ``init_sigma`` Angstrom and runs the same number of steps
    from there (SDEdit); molecules ETKDG cannot embed K times start from noise."""
    opts = request.options or SampleOptions()
    k, s = request.n, run.config["sample"]
    inputs = read_molecules(opts) if inputs is None else inputs
    if inputs is None:
        test = build_dataset({**run.config["data"], "limit": opts.molecules}, "test")
        inputs = [MolInput(f"qm9_{int(test.qm9.arrays['index'][m])}", _no_conf(test.qm9.mol(int(m))))
                  for m in test.mols]
    init = opts.init or s["init"]
    sigma_start = float(opts.init_sigma or s["init_sigma"])
    if init == "etkdg" and not 0 < sigma_start <= s["sigma_max"]:
        raise OptionError("--init-sigma", f"must be in (0, {s['sigma_max']}] Angstrom; got {sigma_start}")
    usable = [item for item in inputs if item.mol is not None]
    graphs = [featurize(item.mol) for item in usable]
    method = run_sampler(request)
    steps, generator = request.settings.steps, request.generator
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
        sigmas = make_grid(s["grid"], steps, s["sigma_min"], sigma_start, schedule=run.schedule,
                           device=run.device) if seeded else run.sigmas(steps)
        out = sample_conformers(run.denoiser, [graphs[i] for i in idx], k, sigmas, method, generator=generator,
                                device=run.device, mirror_fix=not opts.no_mirror_fix,
                                init=[starts[i] for i in idx] if seeded else None)
        for i, c in zip(idx, out):
            confs[i] = c
    seconds = time.perf_counter() - t0
    molecules = [(item.name, with_conformers(item.mol, c)) for item, c in zip(usable, confs)]
    stereo = [sum(stereo_ok(p, g) for p in c) / k for c, g in zip(confs, graphs)]
    return Samples({"molecules": molecules},
                   {"k": k, "errors": {item.name: item.error for item in inputs if item.mol is None},
                    "stereo_ok": {name: v for (name, _), v in zip(molecules, stereo)}, "init": init,
                    "init_sigma": sigma_start if init == "etkdg" else None,
                    "etkdg_started": sum(a is not None for a in starts),
                    "sec_per_conformer": seconds / max(1, len(graphs) * k)})


def run_sampler(request: SampleRequest):
    """The request's sampler function (a plugin's or a built-in)."""
    from polydiff.plugins.manager import get_manager

    return get_manager().sampler(request.settings.sampler)


def _no_conf(mol):
    mol.RemoveAllConformers()
    return mol


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """``out/<name>.sdf`` (K conformers with hydrogens) and ``out/<name>.png`` (a preview, first 16 molecules)."""
    from .preview import conformers_png

    files = []
    for i, (name, mol) in enumerate(samples["molecules"]):
        files.append(write_sdf(mol, out / f"{name}.sdf", name))
        if i < 16:
            files.append(conformers_png(mol, out / f"{name}.png", title=name))
    return files


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """Min-over-K heavy-atom RMSD to reference geometries (a QM9 split, or a 3D SDF), model and ETKDGv3.

    Choose settings on ``--split val``; the test split is for reporting. ``model_etkdg_started`` is the fraction of
    molecules started from ETKDG embeddings."""
    opts = request.options
    n = request.n or 200
    if opts.reference is not None:
        items = read_sdf(opts.reference, need_3d=True)
        for item in items:
            if item.error:
                print(f"skipped {item.name}: {item.error}", file=sys.stderr)
        refs = [item.mol for item in items if item.mol is not None][:n]
    else:
        data = build_dataset({**run.config["data"], "min_heavy": opts.min_heavy, "limit": n}, opts.split)
        refs = [data.qm9.mol(int(m)) for m in data.mols]
    if not refs:
        raise OptionError("--reference", "no usable reference molecules to evaluate on")
    stereo: list[float] = []
    started: list[int] = []

    def model_method(mols, kk):
        inputs = [MolInput(m.GetProp("_Name") if m.HasProp("_Name") else str(i), m) for i, m in enumerate(mols)]
        sample_opts = SampleOptions(init=opts.init, init_sigma=opts.init_sigma)
        samples = generate(run, request.sample(kk, None, sample_opts), inputs)
        stereo.extend(samples.meta["stereo_ok"].values())
        started.append(samples.meta["etkdg_started"])
        return [mol for _, mol in samples["molecules"]]

    methods = {"model": model_method}
    if not opts.no_etkdg:
        methods["etkdg"] = etkdg_method(0)
    results = benchmark(refs, methods, k=opts.k)
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
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(5, "Conformers per molecule.", ("-n", "-k", "--n", "--k")),
                "evaluate": Count(200, "Molecules: the first n of --reference or of the QM9 test split.")},
        noise=lambda batch: com_free_noise(batch.cond),
        shipped_run=SHIPPED,
        demo={"smiles": list(DEMO_SMILES.values())},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
