"""Personalization: fine-tune a class-conditional run on a handful of examples bound to a new class (DreamBooth, Ruiz
et al. 2023), for every domain whose network embeds its labels with ``LabelEmbedding``.

``personalize_run(base, instances, "NAME", out)`` writes an ordinary run folder whose model knows one more class:

1. The network's label table grows by one row, inserted before the null row (``grow_classes``): every
   ``polydiff.domains.common.embeddings.LabelEmbedding`` in it (the toy MLP, the audio U-Net, the points
   transformer and the ECG example all use one), and the ``num_classes`` its owners keep (an int attribute, a
   ``config`` dict entry or a ``config`` dataclass field) follow. A network with its own label table instead
   defines ``add_class(init_from: int | None) -> int`` (returning the new index) and keeps ``num_classes`` (full
   fine-tunes only). The new row starts as the related class's row (``related``) or the mean of the class rows.
   ``prepare_network(network, config)`` grows a network built from a personalized config to the recorded count.
2. Training: every step sees all instances under the new label, plus (prior preservation) as many of the base
   model's own samples of the base classes (all of them, or ``related``), drawn once before training with the
   run's sampler (``prior_samples`` of them), with the loss ``L(instances) + prior_weight * L(prior)``; the loss is
   the run's own (``runs.default_loss``: its objective, weighting, noise and condition dropout, so classifier-free
   guidance keeps working for the new class), on what a training step of the domain sees of each example
   (``Domain.train_view``: points fine-tune, and draw their prior samples, at the set size they were trained on).
3. ``lora_rank`` R: the base is frozen and only low-rank adapters (``core.adapters``) and the new label row train;
   the folder's checkpoint then holds just those (a few hundred KB) and is loaded on top of the base run
   (``personalized.base_run``) by ``load_personalized``. Without it every weight is fine-tuned and the checkpoint
   is a whole model.

With ``per_class`` the instances keep the classes they carry and the name binds to each: one new class
``NAME:CLASS`` per class present, its row starting from CLASS's (DreamBooth's "a [V] dog" for a class-labelled
model: a new speaker saying each digit, ``sample --class NAME:seven``); prior preservation then draws every class.

The config records ``personalized``: ``classes`` (all added class names, in label order after the base data's
classes), ``per_class``, ``base_run``, ``base_classes`` (the label count of the base network), ``instances``,
``prior_weight``, ``prior_samples``, ``related``, ``lora_rank``/``lora_alpha`` and ``adds`` (how many classes this
run added on top of its base run). ``load_personalized`` loads such a folder; ``personalized_domain`` gives a domain
whose class names end with the added ones, so ``run.sample(label="NAME")`` and ``sample --class NAME`` work.

Instances come from the domain's ``read_instances(path, run_config)`` (a Batch in the network's space, normalised as
the run's data; see ``instance_reader``). Conditions follow the labels convention of ``LabelEmbedding`` domains: a
condition is the label tensor itself, or a dict holding it under ``"label"``; for instances read without a condition
the domain's ``label_cond(labels)`` says which (``with_labels``).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from polydiff.core.adapters import add_lora, load_lora, lora_state_dict, merge_lora
from polydiff.core.checkpoint import load_checkpoint, save_checkpoint
from polydiff.core.training import Trainer, TrainConfig, load_weights

from .config import merge, validate_config
from .domain import Batch, Domain, SampleRequest
from .errors import OptionError, UsageError
from .folders import locked, prepare_train_folder
from .manager import get_manager
from .capabilities import PersonalizeOptions
from .runs import Run, build_denoiser, default_loss, load_run, shipped_folder, shipped_name

Tensor = torch.Tensor
FACTS = "personalized"


# ---- growing a network's label table ---------------------------------------------------------------------------


def is_label_embedding(module: nn.Module) -> bool:
    """Whether ``module`` is a label table with a null class in the shape of ``domains.common.embeddings.
    LabelEmbedding`` (an ``nn.Embedding`` ``table`` of ``num_classes + 1`` rows): recognised by that shape, so the
    plugins layer does not import a domain package."""
    table, count = getattr(module, "table", None), getattr(module, "num_classes", None)
    return isinstance(table, nn.Embedding) and isinstance(count, int) and table.num_embeddings == count + 1


def label_embeddings(module: nn.Module) -> dict[str, nn.Module]:
    """The ``LabelEmbedding`` layers of ``module`` by qualified name."""
    return {n: m for n, m in module.named_modules() if is_label_embedding(m)}


def _protocol_owner(module: nn.Module) -> nn.Module | None:
    """The outermost submodule that grows its own classes (``add_class``), if any."""
    return next((m for m in module.modules() if callable(getattr(m, "add_class", None))), None)


def _follow_count(owner: nn.Module, old: int, new: int) -> None:
    """Make ``owner``'s record of its class count (attribute, config dict or config dataclass) say ``new``."""
    if getattr(owner, "num_classes", None) == old and isinstance(owner.num_classes, int):
        owner.num_classes = new
    config = getattr(owner, "config", None)
    if isinstance(config, dict) and config.get("num_classes") == old:
        config["num_classes"] = new
    elif dataclasses.is_dataclass(config) and getattr(config, "num_classes", None) == old:
        owner.config = dataclasses.replace(config, num_classes=new)


@torch.no_grad()
def _grow_table(emb: nn.Module, init_from: int | None) -> int:
    """One more class row in ``emb`` before its null row; returns the new class's index."""
    k, weight = emb.num_classes, emb.table.weight
    row = weight[init_from] if init_from is not None else weight[:k].mean(0)
    table = nn.Embedding(k + 2, weight.shape[1], device=weight.device, dtype=weight.dtype)
    table.weight.copy_(torch.cat([weight[:k], row[None], weight[k:]]))
    table.weight.requires_grad_(weight.requires_grad)
    emb.table, emb.num_classes = table, k + 1
    return k


def grow_classes(module: nn.Module, init_from: int | None = None) -> int:
    """Give ``module`` one more class (its index is returned): a row before the null row of every LabelEmbedding,
    initialised from class ``init_from`` (default: the mean class row), with the owners' ``num_classes`` following;
    or the network's own ``add_class(init_from)``."""
    owner = _protocol_owner(module)
    if owner is not None:
        return int(owner.add_class(init_from))
    embeddings = label_embeddings(module)
    if not embeddings:
        raise UsageError(f"{type(module).__name__} has no LabelEmbedding (and no add_class): personalization needs "
                         "a class-conditional network")
    counts = {e.num_classes for e in embeddings.values()}
    if len(counts) != 1:
        raise UsageError(f"the network's label embeddings disagree on the class count ({sorted(counts)})")
    old = counts.pop()
    owners = [m for m in module.modules() if not is_label_embedding(m)
              and any(is_label_embedding(s) for s in m.modules())]
    for emb in embeddings.values():
        _grow_table(emb, init_from)
    for m in owners:
        _follow_count(m, old, old + 1)
    return old


def class_count(module: nn.Module) -> int:
    """How many classes ``module`` embeds: its LabelEmbeddings' count, or ``num_classes`` of an ``add_class`` owner."""
    owner = _protocol_owner(module)
    if owner is not None:
        return int(owner.num_classes)
    counts = {e.num_classes for e in label_embeddings(module).values()}
    return counts.pop() if len(counts) == 1 else 0


def grow_to(module: nn.Module, total: int) -> None:
    """Grow ``module``'s classes (``grow_classes``) until it embeds ``total``; a no-op when it already does."""
    have = class_count(module)
    if have > total:
        raise UsageError(f"the network embeds {have} classes, more than the {total} its run records")
    for _ in range(total - have):
        grow_classes(module)


def prepare_network(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """``module`` (built from ``config``'s sections) grown to the classes its personalizations added: what
    ``runs.build_denoiser`` should apply so every network built from a personalized config has the right shape."""
    facts = config.get(FACTS)
    if facts:
        grow_to(module, facts["base_classes"] + len(facts["classes"]))
    return module


class NewRows(nn.Module):
    """Parametrization of a label table: rows [first, first + count) come from a trainable parameter, the others
    stay the (frozen) base rows, so a LoRA personalization trains and saves the new class's row alone."""

    def __init__(self, weight: Tensor, first: int, count: int) -> None:
        super().__init__()
        self.first, self.count = first, count
        self.rows = nn.Parameter(weight[first:first + count].detach().clone())

    def forward(self, weight: Tensor) -> Tensor:
        return torch.cat([weight[:self.first], self.rows.to(weight.dtype), weight[self.first + self.count:]])


def train_new_rows_only(module: nn.Module, first: int, count: int = 1) -> None:
    """Freeze every label table of ``module`` except its rows [first, first + count)."""
    for emb in label_embeddings(module).values():
        emb.table.weight.requires_grad_(False)
        parametrize.register_parametrization(emb.table, "weight", NewRows(emb.table.weight, first, count))


def new_rows_state(module: nn.Module, first: int, count: int = 1) -> dict[str, Tensor]:
    """Rows [first, first + count) of every label table, as ``{embedding}.new_rows`` (for the adapter file)."""
    return {f"{name}.new_rows": emb.table.weight[first:first + count].detach().cpu().clone()
            for name, emb in label_embeddings(module).items()}


@torch.no_grad()
def load_new_rows(module: nn.Module, state: dict[str, Tensor], first: int) -> None:
    """Write saved ``{embedding}.new_rows`` into rows [first, ...) of the (already grown) label tables."""
    embeddings = label_embeddings(module)
    for key, rows in state.items():
        name = key.removesuffix(".new_rows")
        if name not in embeddings:
            raise KeyError(f"the adapter holds label rows for {name!r}, which the base network does not have")
        embeddings[name].table.weight[first:first + len(rows)] = rows.to(embeddings[name].table.weight)


def merge_new_rows(module: nn.Module) -> None:
    """Fold ``NewRows`` parametrizations back into plain label tables."""
    for emb in label_embeddings(module).values():
        if parametrize.is_parametrized(emb.table, "weight"):
            parametrize.remove_parametrizations(emb.table, "weight", leave_parametrized=True)


# ---- conditions and rows ---------------------------------------------------------------------------------------


def with_labels(cond: Any, labels: Tensor, domain: Domain | None = None) -> Any:
    """``cond`` with its class labels replaced by ``labels``: a dict gets them under ``"label"``, a label tensor
    becomes ``labels``, and None becomes the domain's ``label_cond(labels)`` when it declares one (else ``labels``);
    anything else is not a LabelEmbedding condition."""
    if cond is None and getattr(domain, "label_cond", None) is not None:
        return domain.label_cond(labels)
    if cond is None or torch.is_tensor(cond):
        return labels
    if isinstance(cond, dict):
        return {**cond, "label": labels}
    raise UsageError(f"cannot set class labels in a condition of type {type(cond).__name__}: personalization and "
                     "editing need the label tensor itself or a dict with 'label'")


def labels_of(cond: Any) -> Tensor | None:
    """The class labels a condition carries (the tensor itself, or its ``"label"``), if any."""
    if torch.is_tensor(cond):
        return cond
    if isinstance(cond, dict) and torch.is_tensor(cond.get("label")):
        return cond["label"]
    return None


def take_rows(value: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of a Batch, tensor, dict of tensors or None (one example per row)."""
    if isinstance(value, Batch):
        if value.group is not None:
            raise UsageError("personalization needs one example per row; ragged batches are not supported")
        return Batch(take_rows(value.x0, idx), take_rows(value.cond, idx))
    if value is None or not (torch.is_tensor(value) or isinstance(value, dict)):
        return value
    if isinstance(value, dict):
        return {k: take_rows(v, idx) for k, v in value.items()}
    return value[idx.to(value.device)]


def cat_rows(parts: list[Any]) -> Any:
    """Batches, tensors or dicts of tensors stacked row-wise (the inverse of ``take_rows``)."""
    first = parts[0]
    if isinstance(first, Batch):
        return Batch(cat_rows([p.x0 for p in parts]), cat_rows([p.cond for p in parts]))
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: cat_rows([p[k] for p in parts]) for k in first}
    return torch.cat(parts) if torch.is_tensor(first) else first


# ---- instances -------------------------------------------------------------------------------------------------


def read_array(path: Path) -> Batch:
    """A ``.npy`` or ``.pt`` file of examples [n, ...] already in the network's space, as ``Batch(x0)`` (the reader
    of a domain whose data need no normalisation, such as the toy's points)."""
    path = Path(path)
    if path.suffix == ".npy":
        x0 = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix == ".pt":
        x0 = torch.load(path, weights_only=True)
    else:
        raise UsageError(f"{path}: expected a .npy or .pt file of examples")
    if not torch.is_tensor(x0) or x0.ndim < 2 or x0.shape[0] == 0:
        raise UsageError(f"{path}: expected an array of examples [n, ...], got {getattr(x0, 'shape', type(x0))}")
    return Batch(x0.float())


def instance_reader(domain: Domain) -> Callable[[Path, dict[str, Any]], Any]:
    """The domain's ``read_instances(path, run_config)``, or a usage error saying the domain declares none."""
    reader = getattr(domain, "read_instances", None)
    if reader is None:
        raise UsageError(f"the {domain.name} domain declares no instance reader (Domain.read_instances), so it cannot "
                         "read examples for personalize or edit")
    return reader


def as_batch(domain: Domain, instances: Any) -> Batch:
    """Instances as one Batch: a Batch as it is; a Tensor or Dataset of examples in ``build_dataset``'s layout
    collated with the domain's ``collate`` (a Tensor without one: its rows are x0)."""
    if isinstance(instances, Batch):
        return instances
    items = instances if torch.is_tensor(instances) else [instances[i] for i in range(len(instances))]
    if domain.collate is None:
        return Batch(instances) if torch.is_tensor(instances) else Batch(torch.stack(items))
    batch = domain.collate(items)
    return batch if isinstance(batch, Batch) else Batch(batch)


# ---- prior preservation ----------------------------------------------------------------------------------------


@torch.no_grad()
def prior_pool(base: Run, template: Batch, count: int, classes: list[int], generator: torch.Generator,
               chunk: int = 64) -> Batch:
    """``count`` samples of the base model, cycling through ``classes``, drawn ``chunk`` at a time in batches shaped
    like ``template``'s rows (its x0 shape, condition layout and the domain's noise) with the run's sampler and
    guidance."""
    labels = torch.tensor(classes, dtype=torch.long)[torch.arange(count) % len(classes)]
    parts = []
    for start in range(0, count, chunk):
        lab = labels[start:start + chunk].to(base.device)
        like = take_rows(template, torch.arange(len(lab)) % template.x0.shape[0])
        cond = with_labels(like.cond, lab, base.domain)
        request = SampleRequest(len(lab), base.settings(), generator, lab)
        noise = base.domain.noise(like) if base.domain.noise is not None else None
        x = base.draw(like.x0, request, cond=cond, noise=noise)
        parts.append(Batch(x.to(like.x0.dtype), cond))
    return cat_rows(parts)


def _loss(base: Run, cfg: dict[str, Any], instances: Batch, pool: Batch | None,
          weight: float) -> Callable[[nn.Module, Tensor, torch.Generator], Tensor]:
    """L(instances) + weight * L(prior rows of this step), the run's own loss for both, on what a training step of
    the domain sees of them (``Domain.train_view``)."""
    inner = default_loss(base.domain, cfg)
    view = base.domain.train_view

    def seen(batch: Batch, generator: torch.Generator) -> Batch:
        return batch if view is None else view(batch, cfg, generator)

    def loss(model: nn.Module, idx: Tensor, generator: torch.Generator) -> Tensor:
        value = inner(model, seen(instances, generator), generator)
        if pool is not None:
            value = value + weight * inner(model, seen(take_rows(pool, idx), generator), generator)
        return value

    return loss


# ---- options and the run ---------------------------------------------------------------------------------------


def _facts(base: Run, added: list[str], n: int, options: PersonalizeOptions, base_classes: int) -> dict[str, Any]:
    """The ``personalized`` record of a new run on top of ``base`` that adds the classes ``added``."""
    earlier = base.config.get(FACTS) or {}
    return {"classes": [*earlier.get("classes", []), *added], "adds": len(added), "per_class": options.per_class,
            "base_run": shipped_name(base) or str(Path(base.path).resolve()),
            "base_classes": earlier.get("base_classes", base_classes), "instances": n,
            "prior_weight": options.prior_weight, "prior_samples": options.prior_samples if options.prior_weight else 0,
            "related": options.related, "lora_rank": options.lora_rank,
            "lora_alpha": None if options.lora_rank is None else float(options.lora_alpha or options.lora_rank)}


def _ema_decay(base_decay: float, steps: int) -> float:
    """The base run's EMA decay, shortened to average over about the last tenth of a fine-tune of ``steps``."""
    return min(base_decay, max(0.0, 1 - 10 / steps))


def _prior_batch(base: Run, options: PersonalizeOptions, n: int) -> int:
    """Prior samples per step: the base run's batch size (at least the instance count, at most the pool)."""
    if options.prior_weight == 0:
        return n
    return min(options.prior_samples, max(n, int(base.config["train"]["batch_size"])))


def _train_section(base: Run, options: PersonalizeOptions, n: int) -> dict[str, Any]:
    """The base run's training settings with the fine-tune's steps, learning rate and batch size (prior samples per
    step; every step also sees all ``n`` instances), a constant learning rate, a shorter EMA, one checkpoint."""
    t = base.config["train"]
    lr = options.lr if options.lr is not None else t["lr"] * (2 if options.lora_rank else 1)
    return {**t, "steps": options.steps, "lr": lr, "batch_size": _prior_batch(base, options, n), "warmup": 0,
            "lr_decay": "none", "decay_from": 0, "accumulate": 1, "ckpt_every": options.steps,
            "ema_decay": _ema_decay(t["ema_decay"], options.steps), "seed": options.seed,
            "log_every": max(1, min(t["log_every"], options.steps // 10))}


def _class_index(base: Run, label: str | None, flag: str) -> int | None:
    """The index of class ``label`` of the base run (None for None), or an error naming ``flag``."""
    if label is None:
        return None
    try:
        return int(base.labels(label, 1)[0])
    except OptionError as exc:
        raise OptionError(flag, str(exc).split(": ", 1)[-1]) from None


def _prepare(model: nn.Module, init_from: list[int | None], lora: tuple[int, float] | None) -> int:
    """Grow the model by one class per entry of ``init_from`` (each starting from that class's row) and make the
    right parameters trainable; returns the first new class's index."""
    first = [grow_classes(model, row) for row in init_from][0]
    if lora is None:
        model.requires_grad_(True)
        return first
    if _protocol_owner(model) is not None:
        raise UsageError("--lora-rank needs a network whose labels use LabelEmbedding")
    add_lora(model, lora[0], lora[1])
    train_new_rows_only(model, first, len(init_from))
    return first


def _adapter_checkpoint(out: Path, model: nn.Module, first: int, count: int, state: dict[str, Any]) -> None:
    """Replace the run's checkpoint by the adapter alone: LoRA weights and the ``count`` new label rows."""
    tensors = {**lora_state_dict(model), **new_rows_state(model, first, count)}
    save_checkpoint(out / "checkpoint", {"model": tensors}, {**state, "adapter": True})


def _bindings(base: Run, batch: Batch, name: str, names: list[str], related: int | None,
              per_class: bool) -> tuple[list[str], list[int | None], Tensor]:
    """What a personalization adds: the new class names, the base class each starts from, and for each instance its
    index among the new classes. One class ``name``; with ``per_class``, ``name:CLASS`` for each class the
    instances carry."""
    n = batch.x0.shape[0]
    if not per_class:
        return [name], [related], torch.zeros(n, dtype=torch.long)
    if related is not None:
        raise OptionError("--related", "not with --per-class: each NAME:CLASS starts from CLASS's own row")
    labels = labels_of(batch.cond)
    base_count = len(names) - len((base.config.get(FACTS) or {}).get("classes", []))
    if labels is None or bool(((labels < 0) | (labels >= base_count)).any()):
        raise UsageError("--per-class needs every instance labelled with one of the base classes (by its sub-folder "
                         "or the domain's file naming)")
    present = sorted(set(labels.tolist()))
    added = [f"{name}:{names[c]}" for c in present]
    taken = sorted(set(added) & set(names))
    if taken:
        raise OptionError("--name", f"classes {', '.join(taken)} exist already")
    index = torch.tensor([present.index(c) for c in labels.tolist()], dtype=torch.long)
    return added, list(present), index


def _check_name(base: Run, name: str) -> list[str]:
    """The base run's class names, after checking that it has classes and ``name`` is a new one."""
    names = base.class_names()
    if not names:
        raise UsageError(f"personalization needs a class-conditional run; {base.path} has no class labels")
    if name in names or not name or name.lstrip("-").isdigit() or name == "all":
        raise OptionError("--name", f"{name!r} is taken or not a name; classes: {', '.join(names)}")
    return names


def _fit(base: Run, model: nn.Module, cfg: dict[str, Any], instances: Batch, pool: Batch | None,
         options: PersonalizeOptions, out: Path, device: torch.device, command: str | None,
         progress: bool) -> nn.Module:
    """Train into the guarded, locked folder ``out``; returns the EMA model."""
    with locked(out):
        prepare_train_folder(out, resume=False, overwrite=options.overwrite)
        if command:
            (out / "command.txt").write_text(command + "\n")
        dataset = torch.arange(options.prior_samples if pool is not None else instances.x0.shape[0])
        trainer = Trainer(model, _loss(base, cfg, instances, pool, options.prior_weight), dataset, out,
                          TrainConfig.from_dict({**cfg["train"], "progress": progress}), device=device,
                          run_config=cfg, on_step_end=_observer(out))
        ema = trainer.fit().eval()
        if options.lora_rank is not None:
            facts = cfg[FACTS]
            first = facts["base_classes"] + len(facts["classes"]) - facts["adds"]
            _adapter_checkpoint(out, ema, first, facts["adds"], {"step": trainer.step, "run": cfg})
    return ema


def personalize_run(base: Run, instances: Any, name: str, out: Path, *, options: PersonalizeOptions | None = None,
                    device: str | torch.device | None = None, command: str | None = None,
                    progress: bool = False, **settings: Any) -> Run:
    """Fine-tune ``base`` on ``instances`` (a Batch, or examples the domain collates) bound to the new class ``name``
    with prior preservation, into the run folder ``out``; returns the personalized Run (class ``name`` sampleable).
    With ``per_class`` the instances keep their own classes and ``name`` binds to each (``name:CLASS``).

    Settings are the fields of ``PersonalizeOptions`` (``prior_weight``, ``prior_samples``, ``related``,
    ``lora_rank``, ``lora_alpha``, ``steps``, ``lr``, ``seed``, ``overwrite``) as keywords or as ``options``.
    """
    from .options import build_options

    options = options or build_options(PersonalizeOptions, settings)
    out, device = Path(out), torch.device(device or base.device)
    names = _check_name(base, name)
    related = _class_index(base, options.related, "--related")
    batch = as_batch(base.domain, instances).to(device)
    n = batch.x0.shape[0]
    added, rows, index = _bindings(base, batch, name, names, related, options.per_class)
    model = copy.deepcopy(base.denoiser).to(device)
    lora = None if options.lora_rank is None else (options.lora_rank, options.lora_alpha or float(options.lora_rank))
    first = _prepare(model, rows, lora)
    base_classes = len(names) - len((base.config.get(FACTS) or {}).get("classes", []))
    cfg = {**merge(base.config, {"train": _train_section(base, options, n)}),
           FACTS: _facts(base, added, n, options, base_classes)}
    labelled = Batch(batch.x0, with_labels(batch.cond, (first + index).to(device), base.domain))
    pool = None
    if options.prior_weight > 0:
        generator = torch.Generator(device=base.device).manual_seed(options.seed)
        classes = [related] if related is not None else list(range(len(names)))
        template = batch if base.domain.train_view is None else base.domain.train_view(batch, base.config, generator)
        pool = prior_pool(base, template, options.prior_samples, classes, generator).to(device)
    ema = _fit(base, model, cfg, labelled, pool, options, out, device, command, progress)
    return _finished(base, cfg, ema, out, device, lora is not None)


def _observer(out: Path) -> Callable[[int, float], None]:
    """Tell plugins observing training about each logged step, as ``train`` does."""
    manager = get_manager()
    return lambda step, loss: manager.notify("polydiff_train_step_end", run_dir=out, step=step, loss=loss)


def _finished(base: Run, cfg: dict[str, Any], model: nn.Module, out: Path, device: torch.device, lora: bool) -> Run:
    """The trained model as a Run (adapters merged for speed; the saved folder keeps them apart)."""
    if lora:
        merge_lora(model)
        merge_new_rows(model)
    model.requires_grad_(False)
    return Run(personalized_domain(base.domain), cfg, model.eval(), out, device)


# ---- loading -----------------------------------------------------------------------------------------------------


def personalized_names(config: dict[str, Any], names: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """The class names ``names`` gives for ``config``, followed by the classes its personalizations added."""
    own = list(names(config))
    return own + [c for c in (config.get(FACTS) or {}).get("classes", []) if c not in own]


def personalized_domain(domain: Domain) -> Domain:
    """``domain`` whose class names include the classes a run's personalizations added (until ``Run.class_names``
    appends them itself)."""
    if domain.classes is None or getattr(domain.classes.names, "personalized", False):
        return domain
    inner = domain.classes.names

    def names(config: dict[str, Any]) -> list[str]:
        return personalized_names(config, inner)

    names.personalized = True  # type: ignore[attr-defined]
    return dataclasses.replace(domain, classes=dataclasses.replace(domain.classes, names=names))


def _base_of(domain: Domain, facts: dict[str, Any], device: str | torch.device) -> Run:
    """The run a LoRA personalization sits on."""
    where = facts["base_run"]
    path = shipped_folder(domain, where) or Path(where)
    if path is not None and not (path / "config.json").is_file():
        raise UsageError(f"this personalization is an adapter on the base run {path}, which is not there; "
                         "put the base run back or personalize without --lora-rank")
    return load_any(domain, path, device)


def load_personalized(domain: Domain, run_dir: Path, device: str | torch.device = "cpu") -> Run:
    """Load a personalized run folder: a whole fine-tuned model (the base network grown by its added classes, then
    its weights), or an adapter (its base run loaded, grown, the label rows and LoRA put on and merged)."""
    run_dir = Path(run_dir)
    raw = json.loads((run_dir / "config.json").read_text())
    facts = raw.pop(FACTS)
    if raw.get("domain") != domain.name:
        raise UsageError(f"--run {run_dir} holds a {raw.get('domain')!r} run, not {domain.name!r}")
    cfg = {**validate_config(raw, domain.sections), FACTS: facts}
    if facts.get("lora_rank"):
        denoiser = prepare_network(_base_of(domain, facts, device).denoiser, cfg)
        first = facts["base_classes"] + len(facts["classes"]) - facts["adds"]
        tensors, _ = load_checkpoint(run_dir / "checkpoint", ("model",))
        weights = tensors.get("model", {})
        load_new_rows(denoiser, {k: v for k, v in weights.items() if k.endswith(".new_rows")}, first)
        load_lora(denoiser, {k: v for k, v in weights.items() if not k.endswith(".new_rows")})
        merge_lora(denoiser)
    else:
        denoiser = prepare_network(build_denoiser(domain, cfg), cfg)
        load_weights(run_dir, denoiser, ema=True)
    denoiser.requires_grad_(False)
    return Run(personalized_domain(domain), cfg, denoiser.to(device).eval(), run_dir, torch.device(device))


def is_personalized(run_dir: Path | None) -> bool:
    """Whether a run folder records a personalization."""
    path = Path(run_dir) / "config.json" if run_dir is not None else None
    return path is not None and path.is_file() and FACTS in json.loads(path.read_text())


def load_any(domain: Domain, run_dir: Path | None, device: str | torch.device = "cpu") -> Run:
    """``load_run``, or ``load_personalized`` for a personalized folder (what ``load_run`` should do itself)."""
    if is_personalized(run_dir):
        return load_personalized(domain, run_dir, device)
    return load_run(domain, run_dir, device)


# ---- the command -------------------------------------------------------------------------------------------------


def _required(options: Any, *names: str) -> None:
    """A usage error naming the first of ``names`` the options leave unset."""
    for name in names:
        if getattr(options, name) is None:
            raise OptionError(f"--{name.replace('_', '-')}", "is required")


def personalize_command(domain: Domain, options: PersonalizeOptions, device: str = "cpu",
                        command: str | None = None, progress: bool = True) -> Run:
    """What ``polydiff <domain> personalize`` does: load the base run, read the instances with the domain's reader,
    personalize into ``--out``."""
    _required(options, "instances", "name", "out")
    base = load_any(domain, options.run, device)
    instances = instance_reader(domain)(Path(options.instances), base.config)
    return personalize_run(base, instances, options.name, options.out, options=options, device=device,
                           command=command, progress=progress)
