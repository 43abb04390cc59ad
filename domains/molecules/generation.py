"""Conformers for the user's molecules (or QM9 test-split ones): the network, ``--data`` sources, reading inputs,
sampling from noise or ETKDG starts, the sample rule (guard, validation, repair), and SDF + PNG output."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polydiff.core.schedules import make_grid
from polydiff.plugins.config import fitted
from polydiff.plugins.distill import distillation_of
from polydiff.plugins.domain import SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from .data import build_dataset, fit_data
from .facts import guard, run_facts
from .io import MolInput, with_conformers, write_sdf
from .plugin import SampleOptions
from .screening import ScreenedSet, screen_molecules, unscreened
from .sections import QM9_SOURCE

if TYPE_CHECKING:
    from rdkit import Chem

    from .network import ConformerNet


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
    return [MolInput(m.GetProp("_Name"), no_conformers(m)) for m in refs]


def no_conformers(mol: Chem.Mol) -> Chem.Mol:
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
    if init == "noise" and _starts_part_way(run.config):
        raise OptionError("--init", f"this student was distilled for ETKDG starts at or below {s['sigma_max']} "
                          "Angstrom, not for pure noise; use --init etkdg or sample its teacher")
    facts = run_facts(run.fitted)
    guarded = guard(inputs, facts)
    for name, why in guarded.refused.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    for name, reasons in guarded.outside.items():
        then = "not validated (--no-validate)" if opts.no_validate else "then validated"
        print(f"note: {name} is outside this run's training molecules ({'; '.join(reasons)}): sampled, {then}",
              file=sys.stderr)
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


def _starts_part_way(cfg: dict[str, Any]) -> bool:
    """Whether the run is a student distilled only below its teacher's sigma_max (``distill --sigma-max``)."""
    info = distillation_of(cfg)
    return bool(info) and float(info["teacher_grid"]["sigma_max"]) < float(info["teacher_sample"]["sigma_max"])


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
        out = sample_conformers(run.denoiser, [graphs[i] for i in idx], k, sigmas, run.sampler_function(request.settings.sampler),
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
