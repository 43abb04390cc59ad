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

This module only declares (sections in ``sections.py``, options, presets and demo molecules here); the functions
live in ``data.py``, ``generation.py`` and ``evaluation.py`` and are named by lazy references, so ``polydiff --help``
imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.plugins import hookimpl
from polydiff.plugins.domain import Count, DataSource, Domain
from polydiff.plugins.lazy import lazy
from polydiff.plugins.options import option

from .screening import RELAX_ITERS
from .sections import INITS, Data, Network, SampleExtras

SHIPPED = Path(__file__).parent / "checkpoints" / "qm9"
DEMO_MOLECULES = {"1,4-dioxane": (660, "C1COCCO1"), "tetrahydrofuran": (160, "C1CCOC1"), "aniline": (940, "Nc1ccccc1"),
                  "2-pyridone": (920, "O=c1cccc[nH]1"), "1-propanol": (40, "CCCO")}
"""The demo's molecules: name -> (QM9 Index, SMILES), all in QM9's test split (Index % 20 == 0), never trained on."""


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


def make_domain() -> Domain:
    """The molecules Domain: conformers of QM9 or of the user's SDF files with an E(3)-equivariant e3nn denoiser."""
    return Domain(
        name="molecules",
        summary="3D conformer ensembles for molecular graphs (QM9 or your SDF conformers, e3nn; vs. RDKit ETKDG)",
        presets=_presets(),
        build_dataset=lazy("polydiff.domains.molecules.data:build_dataset"),
        build_network=lazy("polydiff.domains.molecules.generation:build_network"),
        generate=lazy("polydiff.domains.molecules.generation:generate"),
        save_samples=lazy("polydiff.domains.molecules.generation:save_samples"),
        evaluate=lazy("polydiff.domains.molecules.evaluation:evaluate"),
        primary_metric="model_median",
        lower_is_better=True,
        collate=lazy("polydiff.domains.molecules.data:collate_batch"),
        fit_data=lazy("polydiff.domains.molecules.data:fit_data"),
        sections={"data": Data, "network": Network, "sample": SampleExtras},
        options={"sample": SampleOptions, "evaluate": EvaluateOptions},
        counts={"sample": Count(5, "Conformers per molecule.", ("-n", "-k", "--n", "--k")),
                "evaluate": Count(200, "Molecules: the first n of --reference or of the run's test split.")},
        data_source=DataSource(lazy("polydiff.domains.molecules.generation:data_source"), "qm9 (default), an SDF file of 3D conformers or a folder of them; "
                               "records sharing a name or SMILES are one molecule's ensemble."),
        noise=lazy("polydiff.domains.molecules.graph:batch_noise"),
        shipped_run=SHIPPED,
        demo={"smiles": [f"{smiles} {name}" for name, (_, smiles) in DEMO_MOLECULES.items()]},
    )


@hookimpl
def polydiff_register_domains(register) -> None:
    register(make_domain())
