"""polydiff: diffusion models beyond images (audio, point clouds, molecules, text-to-3D) on one denoiser contract.

The top-level API, in the shape users of diffusers pipelines expect::

    import polydiff

    run = polydiff.load("audio")                  # the shipped checkpoint (or polydiff.load("audio", "runs/mine"))
    samples = run.sample(8, label="seven", steps=25)
    run.save_samples(samples, "out/sevens")       # WAVs, spectrograms.png, samples.json
    metrics = run.evaluate(200)
    run.save("my-model")                          # the from_pretrained / save_pretrained pair:
    again = polydiff.Run.from_folder("my-model")

Importing polydiff is cheap: torch and the domains load when ``load`` is called.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polydiff.plugins.runs import Run

try:
    __version__ = version("polydiff")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"


def domains() -> list[str]:
    """The names of the registered domains (built-in and third-party)."""
    from polydiff.plugins.manager import get_manager

    return sorted(get_manager().domains)


def load(domain: str, run: str | Path | None = None, *, device: str = "cpu") -> "Run":
    """A ready ``Run`` of ``domain``: the run folder ``run``, or the checkpoint the domain ships."""
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import load_run
    from polydiff.plugins.runtime import resolve_device

    return load_run(get_manager().domain(domain), None if run is None else Path(run), resolve_device(device))


def __getattr__(name: str) -> Any:
    """``polydiff.Run`` without importing torch at ``import polydiff``."""
    if name == "Run":
        from polydiff.plugins.runs import Run

        return Run
    raise AttributeError(f"module 'polydiff' has no attribute {name!r}")


__all__ = ["Run", "__version__", "domains", "load"]
