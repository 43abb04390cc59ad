"""The molecules domain as a polydiff plugin: 3D conformer ensembles for molecular graphs, trained on QM9 or on the
user's own conformers (``train --data FILE.sdf|DIR``).

Training batches are ragged (x0 is [N_atoms, 3], ``group`` maps atoms to molecules; graphs are torch-geometric
``Batch``es) with zero-centre-of-mass noise. Samples are SDF files with K conformers per molecule plus PNG previews.
Evaluation against single reference geometries (a QM9 split, or an SDF with one conformer per molecule) is the
min-over-K heavy-atom RMSD; against reference ensembles (an SDF with several conformers per molecule) it is COV-R,
MAT-R, COV-P and MAT-P (``ensembles``); both next to RDKit ETKDGv3 in the same run.

What happens to a molecule given to ``sample`` (and to ``evaluate``'s model):

1. The out-of-distribution guard (``facts``) compares it with what the run was trained on (its ``fitted`` facts). An
   element or formal charge outside the run's vocabulary: the molecule is refused with one line naming it and the
   reason, and the others go on. More heavy atoms than any training molecule, or a ring size never trained on: it is
   sampled, named on stderr and in ``samples.json`` (``out_of_distribution``), and validated as in step 2.
2. Every sampled conformer is validated (``screening``): bond lengths and angles against the molecule's MMFF-relaxed
   ETKDG reference, stereo, clashes. A failing conformer is relaxed briefly with MMFF94 (UFF where MMFF lacks
   parameters; at most ``--relax-iters`` steps a stage, 0 = no repair) and kept if it then passes, its SDF record
   saying so (``polydiff_relaxed``, ``polydiff_relax_rmsd``); otherwise it is dropped and counted. A molecule left
   without conformers gets ETKDGv3 conformers instead, with a warning on stderr naming it (``polydiff_source``
   etkdg_fallback). ``samples.json`` records ``n_relaxed``, ``n_dropped`` and ``fallbacks``. ``--no-validate`` writes
   the raw conformers (``validated`` false).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polydiff.core.schedules import make_grid
from polydiff.plugins import hookimpl
from polydiff.plugins.config import fitted
from polydiff.plugins.domain import Count, DataSource, Domain, EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError
from polydiff.plugins.options import option

from .data import QM9_SOURCE, build_dataset, collate_batch, fit_data
from .facts import guard, run_facts
from .graph import com_free_noise
from .io import MolInput, unique_names, with_conformers, write_sdf
from .screening import RELAX_ITERS, ScreenedSet, screen_molecules, unscreened

if TYPE_CHECKING:
    from rdkit import Chem

    from .network import ConformerNet

SHIPPED = Path(__file__).parent / "checkpoints" / "qm9"
DEMO_MOLECULES = {"1,4-dioxane": (660, "C1COCCO1"), "tetrahydrofuran": (160, "C1CCOC1"), "aniline": (940, "Nc1ccccc1"),
                  "2-pyridone": (920, "O=c1cccc[nH]1"), "1-propanol": (40, "CCCO")}
"""The demo's molecules: name -> (QM9 Index, SMILES), all in QM9's test split (Index % 20 == 0), never trained on."""
INITS = ("noise", "etkdg")
SPLITS = ("random", "scaffold")


@dataclass
class Data:
    """The ``data`` section. ``source``: ``qm9`` or the path of an SDF file or folder of SDF files (3D conformers;
    several records of one molecule form its ensemble). QM9: ``subsample`` s keeps the molecules with
    (Index // 20) % s == 0, so the splits stay proportional; ``max_rows`` reads only the first rows of the CSVs; the
    split is QM9's (Index % 20). SDF: ``split`` random (hash of the canonical SMILES) or scaffold (Bemis-Murcko),
    ``fractions`` train / val / test. Both: ``min_heavy`` and ``limit`` (molecules per split, evenly spread)."""

    source: str = QM9_SOURCE
    split: str = "random"
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    subsample: int = 1
    max_rows: int | None = None
    min_heavy: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        from .splits import check_fractions

        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.source == QM9_SOURCE and self.split != "random":
            raise ValueError("split applies to SDF data; QM9 keeps its own split (Index % 20)")
        check_fractions(self.fractions)


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
    """What molecules' ``sample`` takes: the molecules (SMILES, .smi, .sdf), how conformers start and are checked."""

    inputs: list[str] | None = option(None, "SMILES strings (optionally 'SMILES NAME'), .smi files ('SMILES name' "
                                      "lines) or .sdf files (coordinates ignored).", argument=True)
    smiles: list[str] | None = option(None, "A SMILES string, optionally followed by a name ('CCO ethanol'; "
                                      "repeatable); stereo tags are respected.")
    input_files: list[Path] | None = option(None, "A .smi or .sdf file (repeatable; SDF coordinates are ignored).",
                                            flags=("--input",))
    molecules: int = option(4, "Test-split molecules of the run's data to use when no input is given.", min=1)
    no_mirror_fix: bool = option(False, "Keep conformers of wrong handedness.", flags=("--no-mirror-fix",))
    init: str | None = option(None, "noise (pure diffusion) or etkdg (SDEdit from ETKDGv3 embeddings); default: "
                              "the run's.", choices=INITS)
    init_sigma: float | None = option(None, "Noise level (Angstrom) the ETKDG starts are noised to; default: the "
                                      "run's.", min=1e-6)
    no_validate: bool = option(False, "Write conformers as sampled, without geometry checks, repair or ETKDG "
                               "fallback.", flags=("--no-validate",))
    relax_iters: int = option(RELAX_ITERS, "Force-field steps per repair stage of a conformer that fails the "
                              "geometry checks (0: drop it without repair).", min=0)


@dataclass
class EvaluateOptions:
    """What molecules' ``evaluate`` takes beyond the shared options."""

    k: int = option(5, "Conformers per molecule against single reference geometries.", flags=("-k", "--k"), min=1)
    reference: Path | None = option(None, "SDF of 3D reference conformers; several per molecule (same name or "
                                    "SMILES) form its ensemble and give COV/MAT metrics (default: the run's test "
                                    "split).", exists=True)
    k_factor: int = option(2, "Against ensembles: generate this many times the ensemble's size per molecule.", min=1)
    threshold: float | None = option(None, "Coverage threshold in Angstrom (default: 0.5 A up to 9 heavy atoms, 0.75 "
                                     "A above, for ensembles; 0.5 A for single references).", min=1e-6)
    min_heavy: int = option(6, "Test molecules with at least this many heavy atoms (without --reference).", min=0)
    no_etkdg: bool = option(False, "Skip the RDKit ETKDGv3 baseline.", flags=("--no-etkdg",))
    init: str | None = option(None, "noise or etkdg; default: the run's.", choices=INITS)
    init_sigma: float | None = option(None, "Noise level (Angstrom) of ETKDG starts; default: the run's.", min=1e-6)
    split: str = option("test", "Split of the run's data without --reference: test, or val to choose settings.",
                        choices=("test", "val"))
    no_validate: bool = option(False, "Score the model's conformers as sampled (no checks, repair or fallback).",
                               flags=("--no-validate",))
    relax_iters: int = option(RELAX_ITERS, "Force-field steps per repair stage (0: drop failing conformers).", min=0)


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
    druglike = {  # for `train --data` on drug-sized conformers (benchmarks/molecules_druglike.py train-data)
        # all pairs of ~40 atoms reach ~15 A: radial basis over 10 A, not QM9's 5
        "network": {"scalars": 64, "vectors": 16, "layers": 4, "lmax": 2, "num_rbf": 24, "rbf_max": 10.0},
        # sigma_data 2.5: per-axis std of centred ETKDG+MMFF coordinates of 300 MOSES training molecules (2.54 A);
        # the log-normal training noise moves up by log(2.5 / 1.4) with it
        "diffusion": {**diffusion, "sigma_data": 2.5, "schedule_args": {"P_mean": -0.4, "P_std": 1.4}},
        "train": {"steps": 20000, "batch_size": 16, "lr": 1e-3, "ema_decay": 0.999, "log_every": 50,
                  "ckpt_every": 1000, "warmup": 200, "grad_clip": 1.0},
        "sample": {**sample, "sigma_max": 20.0},
    }
    return {"quick": quick, "cpu": cpu, "full": full, "druglike": druglike}


def build_network(cfg: dict[str, Any]) -> ConformerNet:
    """The conformer network, its atom embeddings sized by the run's vocabulary (QM9's for QM9 runs)."""
    from .network import ConformerNet  # e3nn is imported only when a network is built (fast CLI start-up)

    facts = run_facts(fitted(cfg, fit_data))
    return ConformerNet(**cfg["network"], atom_sizes=facts.vocabulary.sizes())


def data_source(value: str) -> dict[str, Any]:
    """``--data qm9``, ``--data FILE.sdf`` or ``--data DIR`` (its ``*.sdf`` files) as the data section's source."""
    from .userdata import sdf_files

    if value == QM9_SOURCE:
        return {"data": {"source": QM9_SOURCE}}
    sdf_files(value)
    return {"data": {"source": str(Path(value).resolve())}}


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


def test_inputs(run, n: int) -> list[MolInput]:
    """The first ``n`` test-split molecules of the run's data (spread over the split), without conformers."""
    refs = build_dataset({**run.config["data"], "limit": n}, "test").references()
    return [MolInput(m.GetProp("_Name"), _no_conf(m)) for m in refs]


def _no_conf(mol: Chem.Mol) -> Chem.Mol:
    mol.RemoveAllConformers()
    return mol


def generate(run, request: SampleRequest, inputs: list[MolInput] | None = None) -> Samples:
    """``request.n`` conformers for each input molecule (``inputs``, else those the options name, else the first
    ``--molecules`` test-split molecules of the run's data) that the out-of-distribution guard lets through, validated
    as the module docstring says. ``init`` (default: the run's ``sample.init``): ``noise`` samples from pure noise
    down the run's grid; ``etkdg`` starts from K ETKDGv3 embeddings noised to ``init_sigma`` Angstrom and runs the same
    number of steps from there (SDEdit); molecules ETKDG cannot embed K times start from noise."""
    from .chem import featurize

    opts = request.options or SampleOptions()
    k, s = request.n, run.config["sample"]
    inputs = read_molecules(opts) if inputs is None else inputs
    inputs = test_inputs(run, opts.molecules) if inputs is None else inputs
    init = opts.init or s["init"]
    sigma_start = float(opts.init_sigma or s["init_sigma"])
    if init == "etkdg" and not 0 < sigma_start <= s["sigma_max"]:
        raise OptionError("--init-sigma", f"must be in (0, {s['sigma_max']}] Angstrom; got {sigma_start}")
    facts = run_facts(run.fitted)
    guarded = guard(inputs, facts)
    for name, why in guarded.refused.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    for name, reasons in guarded.outside.items():
        print(f"note: {name} is outside this run's training molecules ({'; '.join(reasons)}): sampled, then "
              "validated", file=sys.stderr)
    usable = guarded.usable
    graphs = [featurize(item.mol, facts.vocabulary) for item in usable]
    t0 = time.perf_counter()
    confs, starts = _sample(run, request, usable, graphs, init, sigma_start, not opts.no_mirror_fix)
    seconds = time.perf_counter() - t0
    molecules = [(item.name, with_conformers(item.mol, c)) for item, c in zip(usable, confs)]
    screened = unscreened(molecules) if opts.no_validate else screen_molecules(molecules, opts.relax_iters)
    errors = {item.name: item.error for item in inputs if item.mol is None}
    errors.update(guarded.refused)
    errors.update(screened.failed)
    return Samples({"molecules": screened.molecules, "conf_props": screened.conf_props},
                   {"k": k, "errors": errors, "out_of_distribution": guarded.outside,
                    "stereo_ok": _stereo_ok(screened, dict(zip((i.name for i in usable), graphs))), "init": init,
                    "init_sigma": sigma_start if init == "etkdg" else None,
                    "etkdg_started": sum(a is not None for a in starts),
                    "sec_per_conformer": seconds / max(1, len(graphs) * k), **screened.meta})


def _sample(run, request: SampleRequest, usable: list[MolInput], graphs: list, init: str, sigma_start: float,
            mirror_fix: bool) -> tuple[list, list]:
    """K conformers [k, n_atoms, 3] per molecule, and the ETKDG starts used (None where a molecule started from
    noise)."""
    from .sampling import etkdg_starts, sample_conformers

    k, s, generator = request.n, run.config["sample"], request.generator
    starts: list = [None] * len(usable)
    if init == "etkdg" and usable:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device if generator else "cpu"))
        starts = etkdg_starts([item.mol for item in usable], k, seed)
    confs: list = [None] * len(usable)
    for seeded in (True, False):
        idx = [i for i, a in enumerate(starts) if (a is not None) == seeded]
        if not idx:
            continue
        sigmas = make_grid(s["grid"], request.settings.steps, s["sigma_min"], sigma_start, schedule=run.schedule,
                           device=run.device) if seeded else run.sigmas(request.settings.steps)
        out = sample_conformers(run.denoiser, [graphs[i] for i in idx], k, sigmas, run_sampler(request),
                                generator=generator, device=run.device, mirror_fix=mirror_fix,
                                init=[starts[i] for i in idx] if seeded else None)
        for i, c in zip(idx, out):
            confs[i] = c
    return confs, starts


def _stereo_ok(screened: ScreenedSet, graphs: dict[str, Any]) -> dict[str, float]:
    """Per molecule, the fraction of its written conformers with every requested stereo centre and double bond right."""
    from .sampling import stereo_ok

    out = {}
    for name, mol in screened.molecules:
        confs = list(mol.GetConformers())
        out[name] = sum(stereo_ok(c.GetPositions(), graphs[name]) for c in confs) / max(1, len(confs))
    return out


def run_sampler(request: SampleRequest):
    """The request's sampler function (a plugin's or a built-in)."""
    from polydiff.plugins.manager import get_manager

    return get_manager().sampler(request.settings.sampler)


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """``out/<name>.sdf`` (K conformers with hydrogens, each record with its validation outcome as SDF properties) and
    ``out/<name>.png`` (a preview, first 16 molecules)."""
    from .preview import conformers_png

    files = []
    props = samples.data.get("conf_props", {})
    for i, (name, mol) in enumerate(samples["molecules"]):
        files.append(write_sdf(mol, out / f"{name}.sdf", name, conf_props=props.get(name)))
        if i < 16:
            files.append(conformers_png(mol, out / f"{name}.png", title=name))
    return files


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
        return [made.get(name, _no_conf(Chem.Mol(m))) for name, m in zip(names, mols)]


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


def make_domain() -> Domain:
    """The molecules Domain: conformers of QM9 or of the user's SDF files with an E(3)-equivariant e3nn denoiser."""
    return Domain(
        name="molecules",
        summary="3D conformer ensembles for molecular graphs (QM9 or your SDF conformers, e3nn; vs. RDKit ETKDG)",
        presets=_presets(),
        build_dataset=build_dataset,
        build_network=build_network,
        generate=generate,
        save_samples=save_samples,
        evaluate=evaluate,
        primary_metric="model_median",
        lower_is_better=True,
        collate=collate_batch,
        fit_data=fit_data,
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(5, "Conformers per molecule.", ("-n", "-k", "--n", "--k")),
                "evaluate": Count(200, "Molecules: the first n of --reference or of the run's test split.")},
        data_source=DataSource(data_source, "qm9 (default), an SDF file of 3D conformers or a folder of them; "
                               "records sharing a name or SMILES are one molecule's ensemble."),
        noise=lambda batch: com_free_noise(batch.cond),
        shipped_run=SHIPPED,
        demo={"smiles": [f"{smiles} {name}" for name, (_, smiles) in DEMO_MOLECULES.items()]},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
