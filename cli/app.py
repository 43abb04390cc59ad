"""The ``polydiff`` command: ``info``, ``plugins``, ``demo`` and one sub-app per registered domain."""
from __future__ import annotations

import platform
import sys
import traceback
import time
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer

from polydiff.plugins.manager import get_manager

from .domain_app import build_domain_app
from .errors import DEBUG, fail


def _root() -> typer.Typer:
    app = typer.Typer(help="polydiff: diffusion models beyond images (audio, point clouds, molecules, text-to-3D).",
                      no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                      rich_markup_mode=None)

    @app.callback()
    def root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False) -> None:
        if debug:
            DEBUG["on"] = True

    @app.command("info")
    def info() -> None:
        """Versions, devices, threads, and what the plugin manager holds: samplers, schedules, guidance, domains."""
        import torch

        from polydiff.plugins.runtime import threads

        typer.echo(f"polydiff {version('polydiff')}  python {platform.python_version()}  torch {torch.__version__}")
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        typer.echo(f"devices: cpu ({threads()} thread(s) by default; --threads N or POLYDIFF_THREADS), cuda: {cuda}")
        m = get_manager()
        for kind in ("samplers", "schedules", "guidance", "domains"):
            typer.echo(f"{kind}: {', '.join(sorted(m.registry[kind])) or 'none'}")
        typer.echo(f"plugins: {', '.join(n for n, p in m.plugins.items() if not p.error and not p.disabled)}")

    @app.command("plugins")
    def plugins() -> None:
        """Each plugin: built-in or its distribution and version, and what it registers."""
        m = get_manager()
        for p in m.plugins.values():
            origin = "built-in" if p.builtin else f"{p.distribution} {p.version}"
            state = "disabled" if p.disabled else ("ERROR" if p.error else "ok")
            provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.provides.items()) or "-"
            typer.echo(f"{p.name:<12} {state:<8} {origin:<24} {provides}")
            if p.error:
                typer.echo(f"{'':<12} {p.error}")

    @app.command("demo")
    def demo(out: Annotated[Path, typer.Option("--out", help="Folder for every domain's files (must be new or "
                                                "empty unless --overwrite).")] = Path("demo-out"),
             device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
             seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
             n: Annotated[int, typer.Option("-n", min=1, help="Samples per domain.")] = 8,
             domains: Annotated[Optional[str], typer.Option("--domains", help="Comma-separated subset.")] = None,
             threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch.")] = None,
             overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier demo in --out.")] = False,
             train_steps: Annotated[int, typer.Option("--train-steps", min=1, help="Training steps for a domain that "
                                                      "ships no checkpoint (its quick preset, shortened).")] = 40) -> None:
        """A quick end-to-end pass over every domain: shipped checkpoint (or a short training run), samples, previews.
        Exits 1 when a domain fails or none is registered."""
        from polydiff.plugins.outputs import write_samples
        from polydiff.plugins.runs import resolve_config, train
        from polydiff.plugins.runtime import resolve_device, set_threads

        set_threads(threads)
        m = get_manager()
        names = [d.strip() for d in domains.split(",")] if domains else sorted(m.domains)
        if not names:
            raise RuntimeError("no domain is registered; see `polydiff plugins`")
        dev = resolve_device(device)
        failures = []
        for name in names:
            t0 = time.time()
            try:
                domain = m.domain(name)
                try:
                    run, source = _demo_run(domain, dev)
                except FileNotFoundError:
                    steps = min(train_steps, resolve_config(domain, "quick")["train"]["steps"])
                    cfg = resolve_config(domain, "quick", {"train": {"steps": steps, "ckpt_every": steps}})
                    run = train(domain, cfg, out / "runs" / name, device=str(dev))
                    source = f"{steps}-step training run (no shipped checkpoint: not representative)"
                kwargs = {"n": n, **domain.demo}
                samples = run.sample(kwargs.pop("n"), seed=seed, **kwargs)
                files = write_samples(domain, samples, out / name, record={"source": source, "run": str(run.path)},
                                      overwrite=overwrite)
                typer.echo(f"[{name}] {len(files)} files from the {source} in {time.time() - t0:.0f} s")
            except Exception as exc:  # one domain failing must not hide the others
                failures.append(name)
                typer.echo(f"[{name}] failed: {exc}", err=True)
        typer.echo(f"demo output: {out.resolve()}")
        if failures:
            raise RuntimeError(f"the demo failed for {len(failures)} domain(s): {', '.join(failures)}")

    return app


def _demo_run(domain, device) -> tuple[Any, str]:
    """The run the demo samples: the shipped few-step student where its recorded measurement met its goal (said in
    the source line), else the shipped checkpoint; FileNotFoundError when the domain ships none."""
    from polydiff.plugins.distill import shipped_student, student_verdict
    from polydiff.plugins.runs import load_run

    student = shipped_student(domain)
    verdict = student_verdict(student) if student is not None else None
    if verdict and verdict.get("met"):
        met = f"shipped 4-step student {student.name} (meets its goal: {verdict['measured']})"
        return load_run(domain, student, device), met
    missed = f" (its 4-step student {student.name} misses its goal: {verdict['measured']})" if verdict else ""
    return load_run(domain, None, device), "shipped checkpoint" + missed


def build_app() -> typer.Typer:
    """The root app with every registered domain's sub-app and plugin-contributed commands."""
    app = _root()
    m = get_manager()
    for line in m.errors():
        print(f"warning: {line}", file=sys.stderr)
    for name, domain in sorted(m.domains.items()):
        try:
            app.add_typer(build_domain_app(domain), name=name, help=domain.summary)
        except Exception as exc:
            print(f"warning: domain {name!r} has no CLI: {exc}", file=sys.stderr)
    m.hook.polydiff_cli(app=app)
    return app


def _click(name: str) -> tuple[type, ...]:
    """The click exception class ``name``, from click and from the copy of click that newer typer versions vendor."""
    found = [getattr(click.exceptions, name)] + ([getattr(typer, name)] if hasattr(typer, name) else [])
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        return tuple(found)
    return tuple(found + ([getattr(vendored, name)] if hasattr(vendored, name) else []))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; one clear line and exit 1 on failure (2 on a usage error)."""
    if "--debug" in (argv or sys.argv[1:]):
        DEBUG["on"] = True
    try:
        app = build_app()
        app(args=argv, standalone_mode=False, prog_name="polydiff")
    except _click("Exit") as exc:
        sys.exit(exc.exit_code)
    except _click("Abort"):
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except _click("UsageError") as exc:  # click's own checks (types, ranges, unknown options): one line, exit 2
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        print(f"error: {exc.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # one line (exit 2 for our UsageError, 1 otherwise); --debug adds the traceback
        if DEBUG["on"]:
            traceback.print_exc()
        sys.exit(fail(exc))
    sys.exit(0)
