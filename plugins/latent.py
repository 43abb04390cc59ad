"""Latent diffusion for every domain: train an autoencoder of the domain's data into a run folder, then diffusion
runs in its latent space that sample, evaluate, guide and distil like any run.

An autoencoder run (``train-autoencoder --out AE``) is a run folder: ``config.json`` with the sections ``data``,
``train`` and ``autoencoder`` (``AutoencoderSection``: which network, its sizes, the KL weight, the data and latent
shapes and the latent shift and scale fitted on the training data), ``checkpoint/``, ``metrics.jsonl``, ``loss.png``,
``command.txt`` and ``reconstruction.json`` (MSE of decoded held-out examples, the latents' spread, the compression,
and with ``domain_metric`` the domain's own metrics of decoded held-out examples: the floor a latent run can reach).
The network is the domain's own (``Domain.autoencoder``, proposed) or the generic one for the data's shape
(``polydiff.core.autoencoders``).

A latent run (``train --latent AE``) is a diffusion run whose config has a ``latent`` section (``LatentSection``: the
autoencoder's folder, the latent and data shapes, the shift and scale). Design: the run is trained and loaded through
a *latent view* of the domain (``latent_domain``), a ``Domain`` derived from it whose ``build_dataset`` encodes the
domain's examples (normalised latents, the conditions kept), whose network takes latents, and whose ``generate`` and
``evaluate`` are the domain's own, handed a ``LatentRun`` whose ``draw`` samples latents and decodes them. Everything
that works through the contract therefore works unchanged on a latent run: ``Run.sample`` / ``Run.evaluate`` (the
domain's code sees data-space samples), the registered guidance methods (they act on the latent denoiser with the
domain's conditions and null condition), ``distill`` (its rounds build students and read data through the view) and
``examples/cross_domain.py`` (it loads runs through ``load_run``). A domain's own data-space guidance methods (toy's
``dps``, ``inpaint``) are not offered on latent runs: they would read latents as data.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.core.autoencoders import (LatentCodec, autoencoder_loss, fit_latent_norm, generic_autoencoder,
                                        latent_network)
from polydiff.core.checkpoint import load_checkpoint, save_checkpoint, write_json
from polydiff.core.training import Trainer, TrainConfig, load_weights

from .capabilities import TrainAutoencoderOptions
from .config import LatentSection, merge, read_config_file, validate_config, validate_section
from .domain import Batch, Domain, EvaluateRequest, SampleRequest, SampleSettings
from .errors import ConfigError, OptionError, UsageError
from .folders import locked, prepare_train_folder
from .manager import get_manager
from .personalize import cat_rows, labels_of, take_rows
from .runs import Run, export_run, load_run, resolve_config, train

RECONSTRUCTION = "reconstruction.json"
ENCODE_CHUNK = 256
FIT_EXAMPLES = 4096
METRIC_EXAMPLES = 2000


@dataclass
class AutoencoderSection:
    """The ``autoencoder`` section of an autoencoder run: the network, its loss, and what was fitted."""

    network: str = "auto"
    """``auto`` (the domain's own if it declares one, else generic), ``domain``, ``mlp`` or ``conv``."""
    latent_dim: int = 2
    """MLP: size of the latent vector."""
    latent_channels: int = 4
    """Conv: channels of the latent grid."""
    width: int = 128
    depth: int = 2
    """MLP: hidden width and layers."""
    base: int = 32
    mults: list[int] = field(default_factory=lambda: [1, 2])
    """Conv: base channels and their multipliers per level (the grid shrinks 2x per level after the first)."""
    args: dict[str, Any] = field(default_factory=dict)
    """Settings of a domain's own autoencoder."""
    kl_weight: float = 1e-6
    data_shape: list[int] = field(default_factory=list)
    latent_shape: list[int] = field(default_factory=list)
    shift: float = 0.0
    scale: float = 1.0
    """Latent normalisation fitted on training latents after training: z_n = (z - shift) / scale."""

    def __post_init__(self) -> None:
        if self.network not in ("auto", "domain", "mlp", "conv"):
            raise ValueError(f"network must be auto, domain, mlp or conv, not {self.network!r}")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")


# ---- autoencoder runs --------------------------------------------------------------------------------------------


@dataclass
class AutoencoderRun:
    """A trained autoencoder: its domain, validated config, the (EMA) module in eval mode and its folder."""

    domain: Domain
    config: dict[str, Any]
    autoencoder: nn.Module
    path: Path
    device: torch.device

    @property
    def codec(self) -> LatentCodec:
        """The autoencoder with its fitted latent normalisation."""
        a = self.config["autoencoder"]
        return LatentCodec(self.autoencoder, a["shift"], a["scale"])


def validate_autoencoder_config(domain: Domain, cfg: dict[str, Any]) -> dict[str, Any]:
    """An autoencoder run config checked section by section, with defaults filled in."""
    known = {"data", "train", "autoencoder", "domain", "preset", "fitted"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] in an autoencoder run; known: data, train, autoencoder")
    out = {k: cfg[k] for k in ("domain", "preset", "fitted") if k in cfg}
    if "data" in domain.sections:
        out["data"] = validate_section("data", cfg.get("data", {}), domain.sections["data"])
    else:
        out["data"] = dict(cfg.get("data", {}))
    out["train"] = validate_section("train", cfg.get("train", {}), TrainConfig)
    out["autoencoder"] = validate_section("autoencoder", cfg.get("autoencoder", {}), AutoencoderSection)
    return out


def build_autoencoder(domain: Domain, cfg: dict[str, Any]) -> nn.Module:
    """The autoencoder a config describes: the domain's own (``Domain.autoencoder``) or the generic one by shape."""
    a = cfg["autoencoder"]
    own = getattr(domain, "autoencoder", None)
    if a["network"] == "domain" or (a["network"] == "auto" and own is not None):
        if own is None:
            raise ConfigError(f"[autoencoder] network 'domain': the {domain.name} domain declares no autoencoder")
        return own(cfg)
    shape = a["data_shape"]
    if a["network"] == "mlp" and len(shape) != 1 or a["network"] == "conv" and len(shape) not in (2, 3):
        raise ConfigError(f"[autoencoder] network {a['network']!r} does not fit examples shaped {shape}")
    return generic_autoencoder(shape, latent_dim=a["latent_dim"], latent_channels=a["latent_channels"],
                               width=a["width"], depth=a["depth"], base=a["base"], mults=a["mults"])


def batch_of(domain: Domain, dataset: Any, idx: list[int]) -> Batch:
    """Examples ``idx`` of a dataset as a Batch (the domain's collate, or rows of a tensor)."""
    items = dataset[torch.as_tensor(idx)] if torch.is_tensor(dataset) else [dataset[i] for i in idx]
    if domain.collate is not None:
        batch = domain.collate(items)
    else:
        batch = items if torch.is_tensor(items) else torch.stack(items)
    batch = batch if isinstance(batch, Batch) else Batch(batch)
    if batch.group is not None:
        raise UsageError(f"latent runs need one example per row; the {domain.name} domain's batches are ragged")
    return batch


def chunks(domain: Domain, dataset: Any, limit: int | None = None, size: int = ENCODE_CHUNK):
    """The dataset's first ``limit`` examples (all: None) as Batches of ``size``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, n, size):
        yield batch_of(domain, dataset, list(range(start, min(start + size, n))))


def _device_of(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


def autoencoder_config(domain: Domain, preset: str = "quick", override: dict[str, Any] | None = None) -> dict[str, Any]:
    """An autoencoder run's config: the preset's data and train sections with ``override`` on top, the data and
    latent shapes measured on the training set."""
    base = domain.preset(preset)
    cfg = merge({"data": base.get("data", {}), "train": base.get("train", {})}, override or {})
    cfg.update(domain=domain.name, preset=preset)
    cfg = validate_autoencoder_config(domain, cfg)
    if domain.fit_data is not None and not cfg.get("fitted"):
        cfg["fitted"] = domain.fit_data(cfg["data"])
    probe = batch_of(domain, domain.build_dataset(cfg["data"], "train"), [0, 1])
    cfg["autoencoder"]["data_shape"] = list(probe.x0.shape[1:])
    with torch.no_grad():
        z = build_autoencoder(domain, cfg).eval().encode(probe.x0.float(), probe.cond)
    cfg["autoencoder"]["latent_shape"] = list(z.shape[1:])
    return cfg


def train_autoencoder(domain: Domain, out: Path, *, preset: str = "quick", override: dict[str, Any] | None = None,
                      device: str | torch.device = "cpu", resume: bool = False, overwrite: bool = False,
                      domain_metric: bool = True, command: str | None = None,
                      stop_after: int | None = None) -> AutoencoderRun:
    """Train an autoencoder of ``domain``'s data with the shared Trainer into the run folder ``out``, fit the latent
    normalisation, and write the reconstruction metrics; returns the AutoencoderRun.

    ``override`` holds ``data``, ``train`` and ``autoencoder`` tables over the preset's (on ``resume``: over the
    run's own config)."""
    out = Path(out)
    with locked(out):
        prepare_train_folder(out, resume=resume, overwrite=overwrite)
        saved = out / "config.json"
        if resume and saved.is_file():
            cfg = validate_autoencoder_config(domain, merge(json.loads(saved.read_text()), override or {}))
        else:
            cfg = autoencoder_config(domain, preset, override)
        if command:
            with open(out / "command.txt", "a") as f:
                f.write(command + "\n")
        torch.manual_seed(cfg["train"]["seed"])
        model = build_autoencoder(domain, cfg)
        dataset = domain.build_dataset(cfg["data"], "train")
        kl_weight = cfg["autoencoder"]["kl_weight"]

        def loss(module: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
            batch = batch if isinstance(batch, Batch) else Batch(batch)
            return autoencoder_loss(module, batch.x0, batch.cond, generator, kl_weight)[0]

        manager = get_manager()
        trainer = Trainer(model, loss, dataset, out, TrainConfig.from_dict(cfg["train"]), collate=domain.collate,
                          device=device, run_config=cfg, stop_after=stop_after,
                          on_step_end=lambda step, value: manager.notify("polydiff_train_step_end", run_dir=out,
                                                                         step=step, loss=value))
        ae = trainer.fit(resume=resume).eval()
        run = AutoencoderRun(domain, cfg, ae, out, trainer.device)
        if trainer.step < cfg["train"]["steps"]:
            return run
        _fit_norm(run, dataset)
        write_json(out / "config.json", run.config)
        write_json(out / RECONSTRUCTION, reconstruction_metrics(run, domain_metric=domain_metric))
    return run


@torch.no_grad()
def _fit_norm(run: AutoencoderRun, dataset: Any) -> None:
    """Fit the latent shift and scale on (up to ``FIT_EXAMPLES``) training examples into the run's config."""
    moved = (b.to(run.device) for b in chunks(run.domain, dataset, FIT_EXAMPLES))
    shift, scale = fit_latent_norm(run.autoencoder, ((b.x0.float(), b.cond) for b in moved))
    run.config["autoencoder"].update(shift=shift, scale=scale)


def load_autoencoder(domain: Domain, path: Path, device: str | torch.device = "cpu") -> AutoencoderRun:
    """An autoencoder run folder loaded with its EMA weights, in eval mode."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UsageError(f"{path} is not an autoencoder run (no config.json); pass the --out of a train-autoencoder")
    raw = json.loads(cfg_path.read_text())
    if "autoencoder" not in raw:
        raise UsageError(f"{path} holds a run that is not an autoencoder; pass the --out of a train-autoencoder")
    if raw.get("domain") != domain.name:
        raise UsageError(f"{path} holds a {raw.get('domain')!r} autoencoder, not {domain.name!r}")
    cfg = validate_autoencoder_config(domain, raw)
    ae = build_autoencoder(domain, cfg)
    load_weights(path, ae, ema=True)
    device = torch.device(device)
    return AutoencoderRun(domain, cfg, ae.to(device).eval().requires_grad_(False), path, device)


# ---- reconstruction metrics ---------------------------------------------------------------------------------------


@dataclass
class ReconstructionRun(Run):
    """A stand-in Run whose ``draw`` returns decoded held-out examples instead of samples, so the domain's own
    ``evaluate`` scores the autoencoder's reconstructions (its floor for latent runs). A row asked for with a class
    label gets an example of that class when the examples have labels (so label accuracy is scored fairly)."""

    examples: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    cursors: dict[int, int] = field(default_factory=dict)

    def _pick(self, label: int) -> int:
        """The index of the next example of class ``label`` (any class: -1), cycling."""
        pool = (torch.arange(self.examples.shape[0]) if label < 0 or self.labels is None
                else (self.labels == label).nonzero().flatten())
        if len(pool) == 0:
            return self._pick(-1)
        k = self.cursors.get(label, 0)
        self.cursors[label] = k + 1
        return int(pool[k % len(pool)])

    def draw(self, like: torch.Tensor, request: SampleRequest, *, cond: Any = None, denoiser: Any = None,
             noise: Any = None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        asked = labels_of(cond)
        wanted = asked.tolist() if asked is not None and not asked.is_floating_point() else [-1] * like.shape[0]
        rows = self.examples[torch.tensor([self._pick(int(c)) for c in wanted])].to(self.device)
        if rows.shape[1:] != like.shape[1:]:
            raise UsageError(f"reconstructions shaped {tuple(rows.shape[1:])} for samples shaped {tuple(like.shape[1:])}")
        return rows


@torch.no_grad()
def reconstruction_metrics(run: AutoencoderRun, *, domain_metric: bool = True, split: str = "val",
                           limit: int = METRIC_EXAMPLES) -> dict[str, Any]:
    """MSE of decoded ``split`` examples (posterior means), the normalised latents' mean and std, the compression
    (data size / latent size) and, with ``domain_metric``, the domain's metrics of the decoded examples."""
    codec, dev = run.codec, run.device
    se, count, z_sum, z_sq, z_count, decoded, labels = 0.0, 0, 0.0, 0.0, 0, [], []
    for batch in chunks(run.domain, run.domain.build_dataset(run.config["data"], split), limit):
        batch = batch.to(dev)
        z = codec.encode(batch.x0.float(), batch.cond)
        x = codec.decode(z, batch.cond)
        se, count = se + float((x - batch.x0).double().pow(2).sum()), count + batch.x0.numel()
        z_sum, z_sq, z_count = z_sum + float(z.double().sum()), z_sq + float(z.double().pow(2).sum()), z_count + z.numel()
        decoded.append(x.cpu())
        labels.append(labels_of(batch.cond))
    a = run.config["autoencoder"]
    mean = z_sum / z_count
    metrics: dict[str, Any] = {
        "split": split, "examples": sum(len(d) for d in decoded), "mse": se / count,
        "latent_mean": mean, "latent_std": max(z_sq / z_count - mean**2, 0.0) ** 0.5,
        "data_shape": a["data_shape"], "latent_shape": a["latent_shape"],
        "compression": _numel(a["data_shape"]) / _numel(a["latent_shape"])}
    if domain_metric:
        known = None if any(t is None or t.is_floating_point() for t in labels) else torch.cat([t.cpu() for t in labels])
        metrics["domain"] = _domain_metrics(run, torch.cat(decoded), known)
    return metrics


def _numel(shape: list[int]) -> int:
    out = 1
    for side in shape:
        out *= side
    return out


def _domain_metrics(run: AutoencoderRun, decoded: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
    """The domain's own ``evaluate`` with decoded held-out examples in place of samples."""
    domain = run.domain
    cfg = resolve_config(domain, run.config.get("preset", "quick"), {"data": run.config["data"]})
    if run.config.get("fitted"):
        cfg["fitted"] = run.config["fitted"]
    stand_in = ReconstructionRun(domain, cfg, run.autoencoder, run.path, run.device, examples=decoded, labels=labels)
    settings = SampleSettings("euler", 1, "cfg", 1.0)
    request = EvaluateRequest(None, settings, torch.Generator(device=run.device).manual_seed(0),
                              _default_options(domain, "evaluate"))
    return {k: float(v) for k, v in domain.evaluate(stand_in, request).items()}


def _default_options(domain: Domain, command: str) -> Any:
    from .options import build_options

    return build_options(domain.options.get(command), {})


# ---- the latent view of a domain ----------------------------------------------------------------------------------


class LatentDataset(torch.utils.data.Dataset):
    """Encoded examples: normalised latents [n, ...] with their conditions; a batch of indices is one Batch."""

    def __init__(self, z: torch.Tensor, cond: Any) -> None:
        self.z, self.cond = z, cond

    def __len__(self) -> int:
        return self.z.shape[0]

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])

    def __getitems__(self, idx: list[int]) -> Batch:
        rows = torch.as_tensor(idx, dtype=torch.long)
        return Batch(self.z[rows], take_rows(self.cond, rows))


def collate_latent(items: Any) -> Batch:
    """A Batch as ``LatentDataset.__getitems__`` gives it, or single-example Batches stacked."""
    return items if isinstance(items, Batch) else cat_rows(list(items))


@torch.no_grad()
def encode_dataset(domain: Domain, codec: LatentCodec, dataset: Any, data_shape: list[int]) -> LatentDataset:
    """Every example of a domain's dataset encoded into normalised latents (the posterior means), conditions kept."""
    dev = _device_of(codec)
    zs, conds = [], []
    for batch in chunks(domain, dataset):
        if list(batch.x0.shape[1:]) != list(data_shape):
            raise UsageError(f"the autoencoder takes examples shaped {data_shape}; this data has "
                             f"{list(batch.x0.shape[1:])}")
        on = batch.to(dev)
        zs.append(codec.encode(on.x0.float(), on.cond).cpu())
        conds.append(batch.cond)
    return LatentDataset(torch.cat(zs), cat_rows(conds))


class LatentData:
    """``build_dataset`` of a latent view: the domain's split encoded once and kept."""

    def __init__(self, domain: Domain, codec: LatentCodec, data_shape: list[int]) -> None:
        self.domain, self.codec, self.data_shape = domain, codec, data_shape
        self.cache: dict[tuple[str, str], LatentDataset] = {}

    def __call__(self, data: dict[str, Any], split: str) -> LatentDataset:
        key = (json.dumps(data, sort_keys=True, default=str), split)
        if key not in self.cache:
            self.cache[key] = encode_dataset(self.domain, self.codec, self.domain.build_dataset(data, split),
                                             self.data_shape)
        return self.cache[key]


@dataclass
class LatentRun(Run):
    """A latent run as the domain's code sees it: ``draw`` samples latents and returns them decoded."""

    codec: LatentCodec | None = None

    def draw(self, like: torch.Tensor, request: SampleRequest, *, cond: Any = None, denoiser: Any = None,
             noise: Any = None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """Samples shaped like ``like`` (data space): latents drawn as ``Run.draw`` does (i.i.d. Gaussian noise; a
        request's ``start`` is in latent space), then decoded with the condition."""
        spec = self.config["latent"]
        if list(like.shape[1:]) != list(spec["data_shape"]):
            raise UsageError(f"this latent run draws examples shaped {spec['data_shape']}, not {list(like.shape[1:])}")
        z = super().draw(torch.empty(like.shape[0], *spec["shape"]), request, cond=cond, denoiser=denoiser,
                         sigmas=sigmas)
        with torch.no_grad():
            return self.codec.decode(z, cond).float()


def _decoding(domain: Domain, method: str, codec: LatentCodec, run: Run, request: Any) -> Any:
    """Call the domain's ``generate`` or ``evaluate`` with the run seen through its decoder."""
    view = LatentRun(domain, run.config, run.denoiser, run.path, run.device, codec=codec.to(run.device))
    return getattr(domain, method)(view, request)


def _latent_network(domain: Domain, cfg: dict[str, Any]) -> nn.Module:
    """The denoiser network over latents (see ``LatentSection.network``)."""
    spec = cfg["latent"]
    own = getattr(domain, "latent_network", None)
    if spec["network"] == "domain" or spec["network"] == "auto" and own is not None:
        return own(cfg) if own is not None else domain.build_network(cfg)
    if spec["network"] == "auto" and list(spec["shape"]) == list(spec["data_shape"]):
        return domain.build_network(cfg)
    classes = len(domain.classes.names(cfg)) if domain.classes is not None else 0
    return latent_network(spec["shape"], classes, spec["width"], spec["depth"])


def _encoded_reader(domain: Domain, codec: LatentCodec, path: Path, config: dict[str, Any]) -> Batch:
    batch = domain.read_instances(path, config)
    with torch.no_grad():
        return Batch(codec.encode(batch.x0.float().to(_device_of(codec)), batch.cond).cpu(), batch.cond)


def latent_domain(domain: Domain, codec: LatentCodec, data_shape: list[int]) -> Domain:
    """The latent view of ``domain`` for an autoencoder (see the module docstring)."""
    return dataclasses.replace(
        domain,
        presets={k: merge(v, {"diffusion": {"sigma_data": 1.0}}) for k, v in domain.presets.items()},
        sections={**domain.sections, "latent": LatentSection},
        build_dataset=LatentData(domain, codec, data_shape),
        build_network=partial(_latent_network, domain),
        generate=partial(_decoding, domain, "generate", codec),
        evaluate=partial(_decoding, domain, "evaluate", codec),
        guidance={},
        collate=collate_latent,
        noise=None,
        loss=None,
        shipped_run=None,
        read_instances=partial(_encoded_reader, domain, codec) if domain.read_instances is not None else None,
    )


# ---- latent runs --------------------------------------------------------------------------------------------------


def latent_section(ae: AutoencoderRun) -> dict[str, Any]:
    """The ``latent`` section of a run diffusing in ``ae``'s latent space."""
    a = ae.config["autoencoder"]
    return {"autoencoder": str(Path(ae.path).resolve()), "shape": list(a["latent_shape"]),
            "data_shape": list(a["data_shape"]), "shift": a["shift"], "scale": a["scale"]}


def latent_override(ae: AutoencoderRun) -> dict[str, Any]:
    """What a latent run's config takes from its autoencoder: the ``latent`` section and the fitted facts."""
    out: dict[str, Any] = {"latent": latent_section(ae)}
    if ae.config.get("fitted"):
        out["fitted"] = ae.config["fitted"]
    return out


def latent_setup(domain: Domain, autoencoder: Path, device: str | torch.device = "cpu") -> tuple[Domain, dict[str, Any]]:
    """(the latent view, the config override) that make ``train_folder`` train a latent run: what ``train --latent
    AE`` does (``train_folder(view, out, override=merge(override, ...))``)."""
    ae = load_autoencoder(domain, Path(autoencoder), device)
    return latent_domain(domain, ae.codec, ae.config["autoencoder"]["data_shape"]), latent_override(ae)


def latent_train(domain: Domain, ae: AutoencoderRun, cfg: dict[str, Any], out: Path, *,
                 device: str | torch.device = "cpu", resume: bool = False, stop_after: int | None = None) -> Run:
    """Train a diffusion run of ``domain`` with config ``cfg`` (a resolved config of the domain) in ``ae``'s latent
    space into ``out``; its latents have unit variance, so ``sigma_data`` is 1. Returns the Run (samples decoded)."""
    view = latent_domain(domain, ae.codec, ae.config["autoencoder"]["data_shape"])
    cfg = validate_config(merge(cfg, {**latent_override(ae), "diffusion": {"sigma_data": 1.0}}), view.sections)
    return train(view, cfg, Path(out), device=str(device), resume=resume, stop_after=stop_after)


def autoencoder_folder(run_dir: Path, recorded: str) -> Path:
    """The autoencoder folder a latent run names: the recorded path (a relative one against the run folder), else
    the run's own ``autoencoder/`` (an exported run)."""
    path = Path(recorded)
    candidates = [path if path.is_absolute() else Path(run_dir) / path, Path(run_dir) / "autoencoder"]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    raise UsageError(f"the latent run {run_dir} decodes with the autoencoder {recorded}, which is not there; put it "
                     "back or export the run with its autoencoder")


def is_latent(run_dir: Path | None) -> bool:
    """Whether a run folder holds a latent run."""
    path = Path(run_dir) / "config.json" if run_dir is not None else None
    return path is not None and path.is_file() and bool(json.loads(path.read_text()).get("latent"))


def load_latent_run(domain: Domain, run_dir: Path, device: str | torch.device = "cpu") -> Run:
    """Load a latent run folder as a Run of its latent view: ``sample``/``evaluate`` decode, ``distill`` works on it.
    (What ``load_run`` does for a config with a ``latent`` section once ``plugins/runs.py`` dispatches to it.)"""
    run_dir = Path(run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    spec = raw.get("latent")
    if not spec:
        raise UsageError(f"{run_dir} is not a latent run (no [latent] section)")
    folder = autoencoder_folder(run_dir, spec["autoencoder"])
    ae = load_autoencoder(domain, folder, device)
    codec = LatentCodec(ae.autoencoder, spec["shift"], spec["scale"])
    run = load_run(latent_domain(domain, codec, spec["data_shape"]), run_dir, device)
    run.config["latent"]["autoencoder"] = str(folder)
    return run


def load_any_run(domain: Domain, run_dir: Path | None, device: str | torch.device = "cpu") -> Run:
    """``load_run``, or ``load_latent_run`` for a latent run folder (until ``load_run`` dispatches itself)."""
    if is_latent(run_dir):
        return load_latent_run(domain, Path(run_dir), device)
    return load_run(domain, run_dir, device)


def bundle_autoencoder(run_dir: Path, target: Path) -> None:
    """Put the autoencoder of the latent run ``run_dir`` (EMA weights, config, metrics) into ``target/autoencoder``
    and record it there as the relative path ``autoencoder`` in ``target/config.json`` (an export of the run)."""
    run_dir, target = Path(run_dir), Path(target)
    raw = json.loads((run_dir / "config.json").read_text())
    folder = autoencoder_folder(run_dir, raw["latent"]["autoencoder"])
    tensors, state = load_checkpoint(folder / "checkpoint", ("model",))
    weights = tensors.get("model", {})
    prefix = "ema." if any(k.startswith("ema.") for k in weights) else ""
    picked = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix) and (prefix or not k.startswith("ema."))}
    inner = target / "autoencoder"
    save_checkpoint(inner / "checkpoint", {"model": picked}, {"step": state.get("step"), "exported_from": str(folder)})
    for name in ("config.json", RECONSTRUCTION, "loss.png", "metrics.jsonl", "command.txt"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, inner / name)
    cfg = json.loads((target / "config.json").read_text())
    cfg["latent"]["autoencoder"] = "autoencoder"
    write_json(target / "config.json", cfg)


def export_latent_run(run_dir: Path, out: Path, dtype: str = "float16", *, overwrite: bool = False) -> Path:
    """``export`` a latent run with its autoencoder inside (``out/autoencoder``, float32), so the folder is
    shippable on its own (what ``export_run`` does for latent runs once it calls ``bundle_autoencoder``)."""
    export_run(run_dir, out, dtype, overwrite=overwrite)
    bundle_autoencoder(run_dir, out)
    return Path(out)


def training_domain(domain: Domain, out: Path, latent: Path | None, resume: bool,
                    device: str | torch.device = "cpu") -> tuple[Domain, dict[str, Any]]:
    """(domain, override) for ``train``: the latent view and its override with ``--latent AE``, or when resuming a
    latent run (its recorded autoencoder); else the domain itself and no override."""
    if latent is None and resume and is_latent(out):
        raw = json.loads((Path(out) / "config.json").read_text())
        latent = autoencoder_folder(Path(out), raw["latent"]["autoencoder"])
    if latent is None:
        return domain, {}
    return latent_setup(domain, Path(latent), device)


# ---- the command --------------------------------------------------------------------------------------------------


def _autoencoder_override(options: TrainAutoencoderOptions) -> dict[str, Any]:
    """The config override of ``train-autoencoder``'s options (its --config file under them)."""
    override = read_config_file(options.config) if options.config is not None else {}
    unknown = sorted(set(override) - {"data", "train", "autoencoder"})
    if unknown:
        raise ConfigError(f"{options.config}: train-autoencoder reads [data], [train] and [autoencoder], "
                          f"not [{unknown[0]}]")
    section = {k: v for k, v in (("latent_dim", options.latent_dim), ("latent_channels", options.latent_channels),
                                 ("kl_weight", options.kl_weight)) if v is not None}
    if options.network != "auto":
        section["network"] = options.network
    extra: dict[str, Any] = {"autoencoder": section}
    if options.steps is not None:
        extra["train"] = {"steps": options.steps}
    return merge(override, extra)


def train_autoencoder_command(domain: Domain, options: TrainAutoencoderOptions, device: str = "cpu", *,
                              seed: int | None = None, command: str | None = None) -> AutoencoderRun:
    """What ``polydiff <domain> train-autoencoder`` does (``seed``: the training seed, default the preset's)."""
    if options.out is None:
        raise OptionError("--out", "give the folder to write the autoencoder run into")
    domain.preset(options.preset)
    override = _autoencoder_override(options)
    if seed is not None:
        override = merge(override, {"train": {"seed": seed}})
    return train_autoencoder(domain, options.out, preset=options.preset, override=override,
                             device=device, resume=options.resume, overwrite=options.overwrite,
                             domain_metric=options.domain_metric, command=command)
