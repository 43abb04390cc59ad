"""Options shared by every domain's commands, so ``--run``, ``--out``, ``--device`` ... mean the same everywhere."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

RunOpt = Annotated[Optional[Path], typer.Option("--run", help="Run folder from `train --out` (default: the shipped checkpoint).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder to write into.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (runs are reproducible for a seed).")]
SamplerOpt = Annotated[Optional[str], typer.Option("--sampler", help="Sampler name (see `polydiff info`); default from the run.")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Sampler steps (grid intervals); default from the run.")]
NumOpt = Annotated[int, typer.Option("-n", "--n", help="Number of samples.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML file whose keys override the preset.")]
PresetOpt = Annotated[str, typer.Option("--preset", help="quick (minutes on a CPU) or full.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")]
ScaleOpt = Annotated[Optional[float], typer.Option("--guidance-scale", help="Classifier-free guidance scale (1 = none).")]
TrainStepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Training steps (overrides the preset).")]
