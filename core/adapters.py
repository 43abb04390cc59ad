"""Low-rank adapters (LoRA, Hu et al. 2021) for any torch module, without a new dependency.

``add_lora(module, rank, alpha)`` gives every targeted weight W (a Linear's, a Conv's, any weight of two or more
dimensions) a trainable low-rank update: W' = W + (alpha / rank) B A, with A [rank, fan_in] drawn like a Linear's
weight and B [fan_out, rank] zero, so the adapted module starts exactly at the base. Every base parameter of the
module is frozen; only A and B require grad. A convolution's weight [out, in/groups, *kernel] is updated as the
matrix [out, in/groups * prod(kernel)] (peft's conv LoRA, a k x k conv A followed by a 1 x 1 conv B, is the same
update for groups = 1).

The update is a ``torch.nn.utils.parametrize`` parametrization of the weight itself, so it acts wherever the weight
is read, also where a parent reads it directly instead of calling the layer (``nn.MultiheadAttention`` reads its
``out_proj.weight``: a forward hook on ``out_proj`` would never run). The adapted weights' state-dict keys change
(``x.weight`` becomes ``x.parametrizations.weight.original``): load base weights before ``add_lora``, or after
``merge_lora``, which folds B A into W and restores plain modules.

``lora_state_dict`` holds the adapter alone (``{name}.lora_A``, ``{name}.lora_B``, ``{name}.lora_alpha`` per
adapted weight, a few hundred KB where the base is tens of MB); ``load_lora`` adds the adapters it names to a base
module (or fills existing ones), so a personalization ships as a small file loaded on top of its base run.
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

Tensor = torch.Tensor
Target = type | str

DEFAULT_TARGETS: tuple[Target, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


class LoRA(nn.Module):
    """The parametrization W -> W + (alpha / rank) B A of one weight (A random, B zero: the identity at first)."""

    def __init__(self, weight: Tensor, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        fan_out, fan_in = weight.shape[0], weight[0].numel()
        kw = {"dtype": weight.dtype, "device": weight.device}
        self.lora_A = nn.Parameter(torch.empty(rank, fan_in, **kw))
        self.lora_B = nn.Parameter(torch.zeros(fan_out, rank, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.register_buffer("lora_alpha", torch.tensor(float(alpha)))

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    @property
    def scale(self) -> Tensor:
        return self.lora_alpha / self.rank

    def forward(self, weight: Tensor) -> Tensor:
        """The adapted weight (computed on every read of the module's ``weight``)."""
        delta = (self.lora_B @ self.lora_A).view(weight.shape)
        return weight + (self.scale * delta).to(weight.dtype)


def _matches(name: str, module: nn.Module, targets: Sequence[Target]) -> bool:
    """Whether ``module`` (called ``name``) is a target: an instance of a listed type or a name matching a glob."""
    return any(isinstance(module, t) if isinstance(t, type) else fnmatch.fnmatchcase(name, t) for t in targets)


def _adaptable(module: nn.Module) -> bool:
    """A module with its own matrix-like ``weight`` parameter (two or more dimensions)."""
    weight = module._parameters.get("weight") if not parametrize.is_parametrized(module, "weight") else None
    return weight is not None and weight.ndim >= 2


def lora_layers(module: nn.Module) -> dict[str, LoRA]:
    """The adapters of ``module`` by the qualified name of the layer whose weight they adapt."""
    out = {}
    for name, sub in module.named_modules():
        if parametrize.is_parametrized(sub, "weight"):
            for p in sub.parametrizations["weight"]:
                if isinstance(p, LoRA):
                    out[name] = p
    return out


def add_lora(module: nn.Module, rank: int = 4, alpha: float | None = None,
             targets: Iterable[Target] = DEFAULT_TARGETS) -> list[str]:
    """Adapt every targeted weight of ``module`` in place and freeze all its base parameters; returns the names of
    the adapted layers. ``targets``: module types and/or glob patterns on qualified names (``"blocks.*.mlp.*"``);
    a layer is adapted when it matches any entry and has a weight of two or more dimensions. ``alpha`` defaults to
    ``rank`` (scale 1)."""
    targets = tuple(targets)
    alpha = float(rank if alpha is None else alpha)
    chosen = [(n, m) for n, m in module.named_modules() if n and _adaptable(m) and _matches(n, m, targets)]
    if not chosen:
        raise ValueError(f"no layer of {type(module).__name__} matches the LoRA targets {targets}")
    for p in module.parameters():
        p.requires_grad_(False)
    for name, sub in chosen:
        parametrize.register_parametrization(sub, "weight", LoRA(sub.weight, rank, alpha))
    return [n for n, _ in chosen]


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The trainable adapter parameters of ``module`` (A and B of every adapter)."""
    return [p for layer in lora_layers(module).values() for p in (layer.lora_A, layer.lora_B)]


def lora_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The adapters alone: ``{layer}.lora_A``, ``{layer}.lora_B`` and ``{layer}.lora_alpha`` (detached, on the CPU)."""
    out = {}
    for name, layer in lora_layers(module).items():
        for key in ("lora_A", "lora_B", "lora_alpha"):
            out[f"{name}.{key}"] = getattr(layer, key).detach().cpu().clone()
    return out


def _grouped(state: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """An adapter state dict split by layer name."""
    layers: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        name, _, part = key.rpartition(".")
        if part not in ("lora_A", "lora_B", "lora_alpha"):
            raise KeyError(f"{key!r} is not an adapter tensor (expected <layer>.lora_A, .lora_B or .lora_alpha)")
        layers.setdefault(name, {})[part] = value
    return layers


@torch.no_grad()
def load_lora(module: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Put the adapters of ``state`` (from ``lora_state_dict``) on ``module``: layers not yet adapted get an adapter
    of the stored rank and alpha (their base parameters frozen), existing ones are overwritten. Returns the layer
    names; a missing layer or a shape that does not fit is an error naming it."""
    existing, subs = lora_layers(module), dict(module.named_modules())
    for name, parts in _grouped(state).items():
        if name not in subs:
            raise KeyError(f"the adapter names layer {name!r}, which {type(module).__name__} does not have")
        if name not in existing:
            if not _adaptable(subs[name]):
                raise ValueError(f"layer {name!r} has no weight an adapter fits")
            for p in module.parameters():
                p.requires_grad_(False)
            alpha = float(parts.get("lora_alpha", torch.tensor(float(parts["lora_A"].shape[0]))))
            existing[name] = LoRA(subs[name].weight, parts["lora_A"].shape[0], alpha)
            parametrize.register_parametrization(subs[name], "weight", existing[name])
        layer = existing[name]
        for key, value in parts.items():
            target = getattr(layer, key)
            if target.shape != value.shape:
                raise ValueError(f"adapter {name}.{key} has shape {tuple(value.shape)}, the layer needs "
                                 f"{tuple(target.shape)} (another base network or rank?)")
            target.copy_(value)
    return list(_grouped(state))


@torch.no_grad()
def merge_lora(module: nn.Module) -> list[str]:
    """Fold every adapter into its weight (W <- W + scale B A) and remove it: plain modules again, with the base's
    state-dict keys and no extra cost per call. Returns the merged layer names."""
    names, subs = list(lora_layers(module)), dict(module.named_modules())
    for name in names:
        layer = subs[name]
        trainable = layer.parametrizations["weight"].original.requires_grad
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        layer.weight.requires_grad_(trainable)
    return names
