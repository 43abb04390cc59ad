"""Every domain's sub-app, built from its declarations: ``train``, ``sample``, ``evaluate``, ``export``, ``info`` and
the domain's verbs (a built command under another name with some options fixed).

The options every domain shares are declared here once; a domain's own come from ``Domain.options`` (see
``polydiff.plugins.options``). The actions call the same functions a Python script would (``train_folder``,
``Run.sample``, ``write_samples``, ``Run.evaluate``, ``export_run``).
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from polydiff.plugins.config import merge
from polydiff.plugins.domain import Domain, Verb
from polydiff.plugins.errors import OptionError, RunExistsError
from polydiff.plugins.lazy import Lazy, lazy, resolve
from polydiff.plugins.options import Field, Option, as_dict, build_options, fields_of

from .declare import command


def _f(name: str, tp: Any, default: Any, help: str, **spec: Any) -> Field:
    return Field(name, tp, default, Option(help, **spec))


def _common(domain: Domain, command_name: str) -> list[Field]:
    """Options of the commands that compute: where, how many threads, which seed."""
    return [_f("device", str, "auto", "auto, cpu or cuda."),
            _f("threads", int | None, None, "CPU threads for torch (default: $POLYDIFF_THREADS, else 1).", min=1),
            _f("seed", int, 0, "Random seed (results are reproducible for a seed).")]


def _drawing(domain: Domain, command_name: str) -> list[Field]:
    """Options of the commands that draw samples from a run."""
    count = domain.count(command_name)
    guidance = sorted(_manager().guidance) + sorted(domain.guidance)
    fields = [_f("run", Path | None, None, "Run folder from `train --out` (default: the shipped checkpoint)."),
              _f("n", int | None, count.default, count.help, flags=count.flags, min=1),
              _f("sampler", str | None, None, "Sampler name (see `polydiff info`); default: the run's."),
              _f("steps", int | None, None, "Sampler steps (grid intervals); default: the run's.", min=1),
              _f("guidance_scale", float | None, None, "Classifier-free guidance scale (1 = none); default: the run's."),
              _f("guidance", str | None, None, f"Guidance method: {', '.join(guidance)}; default: the run's (cfg)."),
              _f("precision", str | None, None, "Network arithmetic while sampling: fp32 or bf16 (autocast, CPU or CUDA); "
                 "default: the run's.", choices=("fp32", "bf16"))]
    if domain.classes is not None and command_name == "sample":
        fields.append(_f("label", str | None, None, domain.classes.help, flags=domain.classes.flags))
    from polydiff.plugins.capabilities import ControlSampleOptions

    control = [f for f in fields_of(ControlSampleOptions) if command_name == "sample" or f.name != "control"]
    return fields + control


def control_options(run: Any, shared: dict[str, Any]) -> dict[str, Any]:
    """The control options given (``--control``, ``--control-scale``), refused for a run without a control branch."""
    given = {k: shared[k] for k in ("control", "control_scale") if shared.get(k) is not None}
    if given and not run.config.get("control"):
        name = next(iter(given))
        raise OptionError(f"--{name.replace('_', '-')}", f"{run.path} has no control branch; train one with "
                          "train-control")
    return given


def shared_fields(domain: Domain, command_name: str) -> list[Field]:
    """The options every domain's ``command_name`` takes."""
    if command_name == "train":
        fields = [_f("out", Path, Path("runs") / domain.name, "Run folder to write."),
                  _f("preset", str, "quick", "Configuration preset.", choices=tuple(domain.presets)),
                  _f("config", Path | None, None, "TOML file whose keys override the preset.", exists=True),
                  _f("resume", bool, False, "Continue the run in --out from its last checkpoint.", flags=("--resume",)),
                  _f("overwrite", bool, False, "Replace the run in --out.", flags=("--overwrite",)),
                  _f("steps", int | None, None, "Training steps (overrides the preset).", min=1),
                  _f("latent", Path | None, None, "Autoencoder run folder (from train-autoencoder): diffuse in its "
                     "latent space; sample and evaluate decode.", exists=True),
                  *_common(domain, command_name)]
        if domain.data_source is not None:
            ds = domain.data_source
            fields.insert(1, _f("data", str | None, None, ds.help, flags=ds.flags))
        return fields
    if command_name == "sample":
        return [_f("out", Path | None, None, "Folder to write into (default: a new numbered folder under "
                   f"samples/{domain.name}/); it must be empty unless --overwrite."),
                _f("overwrite", bool, False, "Replace the samples an earlier command wrote into --out.",
                   flags=("--overwrite",)),
                *_drawing(domain, command_name), *_common(domain, command_name)]
    if command_name == "evaluate":
        return [*_drawing(domain, command_name), *_common(domain, command_name),
                _f("out", Path | None, None, "Also write the metrics to this JSON file (a new file)."),
                _f("overwrite", bool, False, "Replace the --out JSON file.", flags=("--overwrite",))]
    raise ValueError(f"no shared options for {command_name!r}")


def _manager():
    from polydiff.plugins.manager import get_manager

    return get_manager()


def _prepare(values: dict[str, Any]) -> Any:
    """Apply threads and the device before torch does any work."""
    from polydiff.plugins.runtime import resolve_device, set_threads

    set_threads(values.get("threads"))
    return resolve_device(values.get("device", "auto"))


def _split(domain: Domain, command_name: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    own = {f.name for f in fields_of(domain.options.get(command_name))}
    return {k: v for k, v in values.items() if k not in own}, {k: v for k, v in values.items() if k in own}


def _command_line() -> str:
    return shlex.join(["polydiff", *sys.argv[1:]])


def train_action(domain: Domain) -> Any:
    def act(values: dict[str, Any]) -> None:
        shared, own = _split(domain, "train", values)
        opts = build_options(domain.options.get("train"), own)
        override: dict[str, Any] = {}
        if shared.get("data") is not None:
            try:
                override = domain.data_source.to_config(shared["data"])
            except ValueError as exc:
                raise OptionError(domain.data_source.flags[0], str(exc)) from None
        for f in fields_of(domain.options.get("train")):
            value = getattr(opts, f.name)
            if f.spec.config and value is not None and value != f.default:
                section, key = f.spec.config.split(".", 1)
                override = merge(override, {section: {key: value}})
        device = _prepare(shared)
        from polydiff.plugins.latent import training_domain
        from polydiff.plugins.runs import train_folder

        from polydiff.core.training import distributed_context

        t0 = time.time()
        out, rank = shared["out"], distributed_context()[0]
        trained, extra = training_domain(domain, out, shared["latent"], shared["resume"], str(device))
        override = merge(override, extra)
        run = train_folder(trained, out, preset=shared["preset"], config_file=shared["config"], override=override,
                           device=str(device), seed=shared["seed"], resume=shared["resume"],
                           overwrite=shared["overwrite"], steps=shared["steps"],
                           command=_command_line() if rank == 0 else None)
        if rank != 0:
            return
        preset = run.config.get("preset", "custom")
        typer.echo(f"trained {domain.name} ({preset}) in {time.time() - t0:.0f} s -> {out} "
                   f"(loss plot: {out / 'loss.png'}); sample with --run {out}")

    return act


def _open(domain: Domain, shared: dict[str, Any]):
    from polydiff.plugins.runs import load_run

    device = _prepare(shared)
    return load_run(domain, shared["run"], device)


def sample_action(domain: Domain) -> Any:
    def act(values: dict[str, Any]) -> None:
        shared, own = _split(domain, "sample", values)
        opts = build_options(domain.options.get("sample"), own)
        from polydiff.core.training import distributed_context

        if shared["out"] is not None and shared["out"].is_file():
            raise OptionError("--out", f"{shared['out']} is a file; give a folder")
        rank, world = distributed_context()
        if world > 1 and shared["out"] is None:
            raise OptionError("--out", "under torchrun every rank writes into one --out: give it")
        run = _open(domain, shared)
        files = (sample_shard(domain, run, shared, opts, rank, world) if world > 1
                 else sample_into(domain, run, shared, opts))
        for f in files:
            typer.echo(str(f))

    return act


def sample_into(domain: Domain, run: Any, shared: dict[str, Any], opts: Any, *, labels: Any = None,
                out: Path | None = None, seed: int | None = None, n: int | None = None) -> list[Path]:
    """Draw and write one folder of samples, holding its lock from the check to the last file."""
    from polydiff.plugins.folders import locked, prepare_sample_folder
    from polydiff.plugins.outputs import sample_folder, write_samples

    out = sample_folder(domain, shared["out"] if out is None else out)
    with locked(out):
        prepare_sample_folder(out, overwrite=shared["overwrite"])
        samples = run.sample(shared["n"] if n is None else n, label=shared.get("label"), labels=labels,
                             sampler=shared["sampler"], steps=shared["steps"], guidance=shared["guidance"],
                             guidance_scale=shared["guidance_scale"], seed=shared["seed"] if seed is None else seed,
                             precision=shared["precision"], progress=True, **as_options(opts),
                             **control_options(run, shared))
        record = {"run": str(run.path), "class": shared.get("label"), "options": as_dict(opts),
                  "command": _command_line()}
        return write_samples(domain, samples, out, record=record, overwrite=shared["overwrite"])


def sample_shard(domain: Domain, run: Any, shared: dict[str, Any], opts: Any, rank: int, world: int) -> list[Path]:
    """Under torchrun: rank r draws its share of ``-n`` (seed + r) into ``OUT/rank-r``; after a barrier rank 0 states
    every shard in ``OUT/samples.json``, so each sample is written exactly once."""
    import torch.distributed as dist

    from polydiff.core.training import init_distributed

    n, out = shared["n"], shared["out"]
    start, count = shard(n, rank, world)
    labels = run.labels(shared.get("label"), n)
    started = init_distributed(run.device)
    try:
        files = sample_into(domain, run, shared, opts, labels=None if labels is None else labels[start:start + count],
                            out=out / f"rank-{rank}", seed=shared["seed"] + rank, n=count) if count else []
        dist.barrier()
        if rank == 0:
            parts = [{"folder": f"rank-{r}", "first": shard(n, r, world)[0], "n": shard(n, r, world)[1],
                      "seed": shared["seed"] + r} for r in range(world)]
            (out / "samples.json").write_text(json.dumps({"domain": domain.name, "run": str(run.path), "n": n,
                                                          "world_size": world, "shards": parts,
                                                          "command": _command_line()}, indent=2))
    finally:
        if started:
            dist.destroy_process_group()
    return files


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """(first index, count) of rank's share when n samples are split as evenly as possible over world ranks."""
    base, extra = divmod(n, world)
    return rank * base + min(rank, extra), base + (rank < extra)


def as_options(opts: Any) -> dict[str, Any]:
    """An options instance back as keyword arguments."""
    return {} if opts is None else {k: getattr(opts, k) for k in opts.__dataclass_fields__}


def evaluate_action(domain: Domain) -> Any:
    def act(values: dict[str, Any]) -> None:
        shared, own = _split(domain, "evaluate", values)
        opts = build_options(domain.options.get("evaluate"), own)
        out = shared["out"]
        if out is not None and out.exists() and not shared["overwrite"]:
            raise RunExistsError(f"{out} exists; pass --overwrite to replace it or choose another --out")
        run = _open(domain, shared)
        metrics = run.evaluate(shared["n"], sampler=shared["sampler"], steps=shared["steps"],
                               guidance=shared["guidance"], guidance_scale=shared["guidance_scale"],
                               seed=shared["seed"], precision=shared["precision"], progress=True, **as_options(opts),
                               **control_options(run, shared))
        for k, v in metrics.items():
            typer.echo(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            settings = run.settings(shared["sampler"], shared["steps"], shared["guidance"], shared["guidance_scale"],
                                    shared["seed"], shared["precision"])
            out.write_text(json.dumps({"metrics": metrics, "run": str(run.path), "settings": settings.as_dict(),
                                       "options": as_dict(opts), "command": _command_line()}, indent=2, default=str))

    return act


def _fields(domain: Domain, command_name: str, verb: Verb | None = None) -> list[Field]:
    shared = shared_fields(domain, command_name)
    fields = shared + fields_of(domain.options.get(command_name))
    clash = {f.name for f in fields_of(domain.options.get(command_name))} & {f.name for f in shared}
    if clash:
        raise ValueError(f"domain {domain.name!r} redeclares shared option(s) {', '.join(sorted(clash))}")
    if verb is None:
        return fields
    return [dataclasses.replace(f, default=verb.defaults.get(f.name, None if f.name == verb.argument else f.default))
            for f in fields if f.name not in verb.fixed]


@dataclasses.dataclass(frozen=True)
class Capability:
    """A core capability as a command of every domain it applies to: its options dataclass, the function that does
    it (``fn(domain, options, device, *, command, [seed])``, a lazy reference so ``--help`` loads no torch), the help
    text and the line it reports when done (``report(result, options, seconds)``)."""

    options: type
    run: Lazy
    help: str
    report: Callable[[Any, Any, float], str]
    applies: Callable[[Domain], bool] = lambda domain: True


def capability_action(domain: Domain, cap: Capability) -> Any:
    """The action of a capability command: build and check its options, apply threads and device, run, report. The
    shared ``--seed`` goes to the function when the options hold no seed of their own."""
    def act(values: dict[str, Any]) -> None:
        from polydiff.core.training import distributed_context

        own = {f.name: values[f.name] for f in fields_of(cap.options)}
        opts = build_options(cap.options, own)
        device = _prepare(values)
        extra = {} if "seed" in own else {"seed": values["seed"]}
        t0 = time.time()
        result = resolve(cap.run)(domain, opts, str(device), **extra,
                                  command=_command_line() if distributed_context()[0] == 0 else None)
        typer.echo(cap.report(result, opts, time.time() - t0))

    return act


def _autoencoder_report(ae: Any, opts: Any, seconds: float) -> str:
    from polydiff.plugins.latent import RECONSTRUCTION

    a = ae.config["autoencoder"]
    mse = json.loads((ae.path / RECONSTRUCTION).read_text())["mse"]
    return (f"trained a {ae.domain.name} autoencoder in {seconds:.0f} s -> {ae.path} (latent {a['latent_shape']} for "
            f"data {a['data_shape']}, reconstruction MSE {mse:.3g}, see {ae.path / RECONSTRUCTION}); train a latent "
            f"run with --latent {ae.path}")


def _personalize_report(run: Any, opts: Any, seconds: float) -> str:
    facts = run.config["personalized"]
    added = facts["classes"][-facts["adds"]:]
    return (f"personalized {run.domain.name} with class{'es' if len(added) > 1 else ''} {', '.join(added)} in "
            f"{seconds:.0f} s -> {run.path}; sample with --run {run.path} --class {added[0]}")


def capabilities() -> dict[str, Capability]:
    """The capability commands, by name."""
    from polydiff.plugins.capabilities import (EditOptions, PersonalizeOptions, TrainAutoencoderOptions,
                                               TrainControlOptions)
    from polydiff.plugins.distill import DistillOptions

    labelled = lambda domain: domain.classes is not None  # noqa: E731  (personalize and edit bind/swap class labels)
    return {
        "distill": Capability(
            DistillOptions, lazy("polydiff.plugins.distill:distill_command"),
            "Few-step student: progressive distillation of the run's deterministic sampler (guided with "
            "--guidance-scale-range), round by round through the shared loop.",
            lambda run, o, t: (f"distilled {run.domain.name} into a {run.config['sample']['steps']}-step student in "
                               f"{t:.0f} s -> {run.path}; sample with --run {run.path}")),
        "personalize": Capability(
            PersonalizeOptions, lazy("polydiff.plugins.personalize:personalize_command"),
            "Teach the run a new class NAME from a few examples (--instances), with prior preservation; --lora-rank "
            "for a small adapter.",
            _personalize_report, labelled),
        "edit": Capability(
            EditOptions, lazy("polydiff.plugins.editing:edit_command"),
            "Redraw examples (--input) as another class (--to): inverted along the probability-flow ODE and "
            "regenerated, or SDEdit.",
            lambda samples, o, t: f"edited {o.input} into class {o.to!r} in {t:.0f} s -> {samples.meta['out']}",
            labelled),
        "train-autoencoder": Capability(
            TrainAutoencoderOptions, lazy("polydiff.plugins.latent:train_autoencoder_command"),
            "Train an autoencoder of the domain's data into a run folder (reconstruction metrics in "
            "reconstruction.json); then `train --latent OUT` diffuses in its latent space.", _autoencoder_report),
        "train-control": Capability(
            TrainControlOptions, lazy("polydiff.plugins.control:train_control_command"),
            "Train a ControlNet branch on a frozen run for one of the domain's control signals (--control KIND); "
            "then `sample --control FILE`.",
            lambda run, o, t: (f"trained the {o.control} control of {run.domain.name} in {t:.0f} s -> {run.path}; "
                               f"sample with --run {run.path} --control FILE"),
            lambda domain: bool(getattr(domain, "controls", None))),
    }


def capability_fields(domain: Domain, options: type) -> list[Field]:
    """A capability command's options: its declared dataclass and the computing options every command has (those it
    does not declare itself)."""
    own = fields_of(options)
    return own + [f for f in _common(domain, "") if f.name not in {o.name for o in own}]


ACTIONS = {"train": train_action, "sample": sample_action, "evaluate": evaluate_action}
HELP = {"train": "Train a model into a run folder (checkpoints, metrics.jsonl, loss.png).",
        "sample": "Draw samples and write them with a PNG preview and samples.json.",
        "evaluate": "Print the domain's metrics for samples of the run against held-out data."}


def _with_fixed(action: Any, fixed: dict[str, Any], required: str | None) -> Any:
    def act(values: dict[str, Any]) -> None:
        if required is not None and values.get(required) is None:
            raise OptionError(required.upper(), "missing: give it as the first argument")
        action({**values, **fixed})

    return act


def build_domain_app(domain: Domain) -> typer.Typer:
    """The typer sub-app of ``domain``, built from its declarations."""
    app = typer.Typer(help=domain.summary, no_args_is_help=True, rich_markup_mode=None)
    for name in ("train", "sample", "evaluate"):
        app.command(name, help=HELP[name])(command(name, HELP[name], _fields(domain, name), ACTIONS[name](domain)))
    for name, verb in domain.verbs.items():
        act = _with_fixed(ACTIONS[verb.command](domain), verb.fixed, verb.argument)
        app.command(name, help=verb.help)(command(name, verb.help, _fields(domain, verb.command, verb), act,
                                                  argument=verb.argument))

    for name, cap in capabilities().items():
        if cap.applies(domain):
            app.command(name, help=cap.help)(command(name, cap.help, capability_fields(domain, cap.options),
                                                     capability_action(domain, cap)))

    @app.command("export")
    def export_cmd(run: Path = typer.Argument(..., help="Run folder from `train --out`."),
                   out: Path = typer.Option(..., "--out", help="New folder for the shippable run."),
                   dtype: str = typer.Option("float16", help="float16, bfloat16 or float32."),
                   overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in --out.")) -> None:
        """Write a run's shippable form: config + EMA weights only (safetensors + JSON), loss plot, commands."""
        from polydiff.plugins.runs import export_run

        export_run(run, out, dtype, overwrite=overwrite)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        typer.echo(f"exported {run} -> {out} ({size / 1e6:.1f} MB, {dtype}); sample with --run {out}")

    @app.command("info")
    def info_cmd() -> None:
        """Show the domain's presets, options and whether it ships a checkpoint."""
        typer.echo(f"{domain.name}: {domain.summary}")
        typer.echo(f"presets: {', '.join(domain.presets)}")
        shipped = domain.shipped_run is not None and (Path(domain.shipped_run) / "config.json").is_file()
        typer.echo(f"shipped checkpoint: {domain.shipped_run if shipped else 'none'}")
        arrow = "lower" if domain.lower_is_better else "higher"
        typer.echo(f"primary metric: {domain.primary_metric} ({arrow} is better)")
        for cmd in ("train", "sample", "evaluate"):
            own = [f.flag for f in fields_of(domain.options.get(cmd))]
            typer.echo(f"{cmd} options of this domain: {', '.join(own) or 'none'}")

    return app
