"""The molecules domain's ``sample`` and ``evaluate`` commands (SMILES / .smi / .sdf inputs, K conformers, ETKDG)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from polydiff.cli.domain_app import open_run, write_samples
from polydiff.cli.options import DeviceOpt, OutOpt, RunOpt, SamplerOpt, SeedOpt, StepsOpt

KOpt = Annotated[int, typer.Option("-k", "--k", min=1, help="Conformers per molecule.")]
MolsOpt = Annotated[int, typer.Option("-n", "--n", min=1, help="Molecules: the first n of --reference or of the QM9 test "
                                                                "split.")]


InitOpt = Annotated[Optional[str], typer.Option(
    "--init", help="noise (pure diffusion) or etkdg (SDEdit from ETKDGv3 embeddings); default: the run's.")]
InitSigmaOpt = Annotated[Optional[float], typer.Option(
    "--init-sigma", min=0.0, help="Noise level (Angstrom) the ETKDG starts are noised to; default: the run's.")]


def _domain():
    from polydiff.plugins.manager import get_manager

    return get_manager().domain("molecules")


def add_commands(app: typer.Typer) -> None:
    """Register ``sample`` and ``evaluate`` on the molecules sub-app."""

    @app.command("sample")
    def sample(inputs: Annotated[Optional[list[str]], typer.Argument(
                   help="SMILES strings, .smi files ('SMILES name' lines) or .sdf files (coordinates ignored).")] = None,
               smiles: Annotated[Optional[list[str]], typer.Option(
                   "--smiles", help="A SMILES string (repeatable); stereo tags are respected.")] = None,
               input_files: Annotated[Optional[list[Path]], typer.Option(
                   "--input", help="A .smi or .sdf file (repeatable; SDF coordinates are ignored).")] = None,
               out: OutOpt = Path("samples") / "molecules", run: RunOpt = None,
               k: Annotated[int, typer.Option("-n", "-k", "--n", "--k", min=1, help="Conformers per molecule.")] = 5,
               molecules: Annotated[int, typer.Option(
                   "--molecules", min=1, help="QM9 test-split molecules to use when no input is given.")] = 4,
               sampler: SamplerOpt = None, steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
               no_mirror_fix: Annotated[bool, typer.Option("--no-mirror-fix", help="Keep conformers of wrong handedness.")] = False,
               init: InitOpt = None, init_sigma: InitSigmaOpt = None) -> None:
        """Write OUT/<name>.sdf with K conformers (with H) and a PNG preview per molecule (no input: QM9 test ones)."""
        from .io import read_inputs

        given = bool(inputs or smiles or input_files)
        items = read_inputs(inputs or [], smiles=smiles or [], files=input_files or []) if given else None
        if items is not None:
            for item in items:
                if item.error:
                    typer.echo(f"skipped {item.name}: {item.error}", err=True)
            if not any(item.mol is not None for item in items):
                raise typer.BadParameter("none of the inputs is a usable molecule", param_hint="--smiles/--input")
        r = open_run(_domain(), run, device)
        g = torch.Generator(device=r.device).manual_seed(seed)
        samples = _domain().generate(r, molecules, sampler=sampler, steps=steps, generator=g, inputs=items, k=k,
                                     mirror_fix=not no_mirror_fix, init=init, init_sigma=init_sigma)
        write_samples(_domain(), samples, out, {"sampler": sampler or r.config["sample"]["sampler"],
                                                "steps": steps or r.config["sample"]["steps"], "k": k, "seed": seed,
                                                "run": str(r.path)})

    @app.command("evaluate")
    def evaluate(run: RunOpt = None, n: MolsOpt = 200, k: KOpt = 5, sampler: SamplerOpt = None,
                 steps: StepsOpt = None, seed: SeedOpt = 0, device: DeviceOpt = "auto",
                 reference: Annotated[Optional[Path], typer.Option(help="SDF of 3D reference geometries (default: QM9 test split).")] = None,
                 min_heavy: Annotated[int, typer.Option(help="QM9 test molecules with at least this many heavy atoms.")] = 6,
                 no_etkdg: Annotated[bool, typer.Option("--no-etkdg", help="Skip the RDKit ETKDGv3 baseline.")] = False,
                 init: InitOpt = None, init_sigma: InitSigmaOpt = None,
                 split: Annotated[str, typer.Option(help="QM9 split without --reference: test, or val to choose "
                                                         "settings.")] = "test") -> None:
        """Min-over-K heavy-atom RMSD (median, mean, coverage at 0.5 A, time per conformer) vs. ETKDGv3."""
        if reference is not None and not reference.is_file():
            raise typer.BadParameter(f"{reference} does not exist", param_hint="--reference")
        r = open_run(_domain(), run, device)
        g = torch.Generator(device=r.device).manual_seed(seed)
        metrics = _domain().evaluate(r, sampler=sampler, steps=steps, n=n, generator=g, k=k, min_heavy=min_heavy,
                                     reference=reference, etkdg=not no_etkdg, init=init, init_sigma=init_sigma,
                                     split=split)
        for key, v in metrics.items():
            typer.echo(f"{key}: {v:.4g}" if isinstance(v, float) else f"{key}: {v}")
