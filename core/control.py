"""ControlNet (Zhang et al. 2023) for any network that exposes its residual features: a frozen base, a trainable copy
of its encoder that reads a control signal, and zero-initialised projections adding the copy's features back into
the base, so training starts exactly at the base model.

The protocol a controllable network ``F(x_in, c_noise, cond)`` implements (the shared U-Net, the points transformer
and the toy MLP do):

- ``feature_axis``: 1 when its features are channels-first ([B, C, ...], convolutions), -1 when channels-last
  ([B, C] or [B, N, C], MLPs and transformers);
- ``feature_channels() -> list[int]``: the channels of each residual feature;
- ``features(x_in, c_noise, cond=None, hint=None) -> list[Tensor]``: the encoder's residual features, with ``hint``
  (the encoded control) added to the first one (``add_hint`` broadcasts a [B, C] hint over positions and resizes a
  grid hint); for a U-Net the skip features and the middle block's output;
- ``forward(x_in, c_noise, cond=None, residuals=None)``: the network with ``residuals[i]`` added to feature i
  (``residuals=None``: the plain network, unchanged);
- optionally ``control_branch() -> nn.Module``: the trainable copy (a U-Net's encoder half); default: a deep copy.

The control reaches a ``ControlNet`` inside the condition: ``with_control(cond, control, keep)`` is a dict holding
the base network's condition, the controls [B, ...] (one per row) and optionally ``keep`` [B] (False: the row's
control is dropped). Being a dict of per-row tensors, it survives every row operation the framework and the domains
apply to conditions (stacked for batched guidance, repeated over anchored point sets, rows taken), so a control stays
with its sample. A condition without a control gives the base network.

Classifier-free guidance on the control: ``ControlGuided(D, w) = D_null + w (D_control - D_null)``, where the null
control is the base model itself (a ControlNet trained without control dropout) or a learned null hint (trained with
control dropout p > 0: dropped rows get the learned ``null_hint`` instead of the encoded control). ``w = 1`` is the
plain controlled model, ``w > 1`` follows the control more closely. Guidance on the domain's own condition goes on
top (its null condition keeps the control, as ControlNet does with prompts).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


@runtime_checkable
class Controllable(Protocol):
    """A network a ``ControlNet`` can wrap (see the module docstring)."""

    feature_axis: int

    def feature_channels(self) -> list[int]: ...

    def features(self, x_in: Tensor, c_noise: Tensor, cond: Any = None, hint: Tensor | None = None) -> list[Tensor]: ...


def add_hint(h: Tensor, hint: Tensor | None, axis: int) -> Tensor:
    """``h + hint``: a [B, C] hint is broadcast over positions; a channels-first grid hint (``axis`` 1) is resized to
    ``h``'s grid, and one over fewer axes covers the last ones (a time control over time-frequency features)."""
    if hint is None:
        return h
    if hint.ndim == 2 and h.ndim > 2:
        hint = hint.reshape(hint.shape[0], -1, *[1] * (h.ndim - 2)) if axis == 1 else hint[:, None]
    elif axis == 1 and 2 < hint.ndim < h.ndim:
        hint = hint.reshape(*hint.shape[:2], *[1] * (h.ndim - hint.ndim), *hint.shape[2:])
    if axis == 1 and hint.ndim == h.ndim > 2:
        size = tuple(1 if a == 1 else b for a, b in zip(hint.shape[2:], h.shape[2:]))
        if size != tuple(hint.shape[2:]):
            hint = F.interpolate(hint, size=size, mode="nearest")
    return h + hint.to(h.dtype)


CONTROL, BASE, KEEP = "controlnet.control", "controlnet.cond", "controlnet.keep"
"""The keys of a controlled condition (chosen not to clash with a domain's own condition keys)."""


def with_control(cond: Any, control: Tensor, keep: Tensor | None = None) -> dict[str, Any]:
    """The condition ``cond`` carrying ``control`` [B, ...] (and ``keep`` [B]: False drops the row's control)."""
    out = {BASE: cond, CONTROL: control}
    if keep is not None:
        out[KEEP] = keep
    return out


def is_controlled(cond: Any) -> bool:
    """Whether a condition carries a control."""
    return isinstance(cond, dict) and CONTROL in cond


def split_control(cond: Any) -> tuple[Any, Tensor | None, Tensor | None]:
    """(the base's condition, the control or None, keep or None)."""
    if not is_controlled(cond):
        return cond, None, None
    return cond[BASE], cond[CONTROL], cond.get(KEEP)


def drop_control(cond: Any) -> Any:
    """The condition with every row's control dropped (the null control of guidance on the control)."""
    if not is_controlled(cond):
        return cond
    control = cond[CONTROL]
    return {**cond, KEEP: torch.zeros(control.shape[0], dtype=torch.bool, device=control.device)}


class ZeroProjection(nn.Module):
    """A linear map over the channel axis, initialised to zero (ControlNet's "zero convolution")."""

    def __init__(self, channels: int, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor) -> Tensor:
        if self.axis == -1:
            return self.proj(h)
        return self.proj(h.movedim(self.axis, -1)).movedim(-1, self.axis)


def control_branch(net: nn.Module) -> nn.Module:
    """The trainable copy of ``net``: its own ``control_branch()`` (an encoder) or a deep copy of the whole network."""
    branch = net.control_branch() if hasattr(net, "control_branch") else copy.deepcopy(net)
    return branch.requires_grad_(True)


class ControlNet(nn.Module):
    """``F(x_in, c_noise, cond)`` of a frozen ``base`` steered by a control through a trainable copy of its encoder.

    ``encoder`` maps a control [B, ...] to the hint added to the copy's first feature ([B, C] or the feature's
    shape). ``learned_null``: the null control is a learned hint (trained with control dropout) instead of the base.
    """

    def __init__(self, base: nn.Module, encoder: nn.Module, *, learned_null: bool = False) -> None:
        super().__init__()
        if not isinstance(base, Controllable):
            raise TypeError(f"{type(base).__name__} does not expose its residual features (feature_axis, "
                            "feature_channels, features, forward(..., residuals)); see polydiff.core.control")
        self.branch = control_branch(base)
        self.base = base.requires_grad_(False).eval()
        self.encoder = encoder
        axis = base.feature_axis
        self.projections = nn.ModuleList(ZeroProjection(c, axis) for c in base.feature_channels())
        channels = base.feature_channels()[0]
        self.null_hint = nn.Parameter(torch.zeros(channels)) if learned_null else None

    @property
    def axis(self) -> int:
        return self.base.feature_axis

    def train(self, mode: bool = True) -> "ControlNet":
        """Train the branch; the frozen base stays in eval mode (its dropout and norms as in the base model)."""
        super().train(mode)
        self.base.eval()
        return self

    def load_base(self, state: dict[str, Tensor]) -> None:
        """Load the base network's weights into the frozen base and the trainable copy."""
        self.base.load_state_dict(state)
        missing, _ = self.branch.load_state_dict(state, strict=False)
        if missing:
            raise KeyError(f"the control branch has weights the base lacks: {missing[:5]}")

    def _hint(self, control: Tensor, keep: Tensor | None) -> Tensor | None:
        """The encoded control, with the learned null hint in dropped rows; None: run the base alone."""
        if keep is not None and self.null_hint is None:
            if bool(keep.all()):
                keep = None
            elif not bool(keep.any()):
                return None
            else:
                raise ValueError("control dropout needs a ControlNet built with learned_null=True")
        hint = self.encoder(control)
        if keep is None:
            return hint
        shape = [1] * hint.ndim
        shape[1 if self.axis == 1 else -1] = -1
        null = self.null_hint.reshape(shape).to(hint.dtype).expand_as(hint)
        return torch.where(keep.reshape(-1, *[1] * (hint.ndim - 1)), hint, null)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        cond, control, keep = split_control(cond)
        hint = None if control is None else self._hint(control, keep)
        if hint is None:
            return self.base(x_in, c_noise, cond)
        feats = self.branch.features(x_in, c_noise, cond, hint=hint)
        residuals = [p(f) for p, f in zip(self.projections, feats)]
        return self.base(x_in, c_noise, cond, residuals=residuals)


def find_control_net(module: nn.Module) -> ControlNet:
    """The ``ControlNet`` inside a denoiser (or the module itself)."""
    for m in module.modules():
        if isinstance(m, ControlNet):
            return m
    raise TypeError(f"{type(module).__name__} holds no ControlNet")


class ControlGuided(nn.Module):
    """Classifier-free guidance on the control: ``D_null + scale (D_control - D_null)`` (``scale`` 1: unguided);
    conditions without a control pass to the denoiser unchanged. ``net`` is the wrapped denoiser's network."""

    def __init__(self, denoiser: nn.Module, scale: float) -> None:
        super().__init__()
        self.denoiser, self.scale = denoiser, float(scale)

    @property
    def net(self) -> nn.Module:
        return self.denoiser.net

    def forward(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        d_on = self.denoiser(x, sigma, cond)
        if self.scale == 1.0 or not is_controlled(cond):
            return d_on
        d_null = self.denoiser(x, sigma, drop_control(cond))
        return d_null + self.scale * (d_on - d_null)


# ---- control encoders -------------------------------------------------------------------------------------------


class VectorControlEncoder(nn.Module):
    """A flat control [B, K] -> a hint [B, C] (broadcast over the feature's positions)."""

    def __init__(self, size: int, channels: int, width: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(size, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, channels))

    def forward(self, control: Tensor) -> Tensor:
        return self.net(control.flatten(1).float())


class SetControlEncoder(nn.Module):
    """A set of points [B, M, D] (a partial scan) -> a hint [B, C]: a shared MLP and max pooling (PointNet)."""

    def __init__(self, point_dim: int, channels: int, width: int = 128) -> None:
        super().__init__()
        self.point = nn.Sequential(nn.Linear(point_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(width, channels))

    def forward(self, control: Tensor) -> Tensor:
        return self.head(self.point(control.float()).amax(dim=1))


class GridControlEncoder(nn.Module):
    """A grid control [B, c, ...] -> a hint [B, C, ...] (ControlNet's hint encoder, resized to the feature's grid)."""

    def __init__(self, in_channels: int, channels: int, dims: int, width: int = 32) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.net = nn.Sequential(conv(in_channels, width, 3, padding=1), nn.SiLU(), conv(width, width, 3, padding=1),
                                 nn.SiLU(), conv(width, channels, 3, padding=1))

    def forward(self, control: Tensor) -> Tensor:
        return self.net(control.float())


ENCODERS = ("vector", "set", "grid")


def encoder_kind(control_shape: Sequence[int], feature_axis: int) -> str:
    """The generic encoder for controls shaped ``control_shape``: ``vector`` for [K], ``set`` for points [M, D]
    into channels-last features, ``grid`` for [c, L] or [c, H, W] into channels-first features."""
    shape = tuple(control_shape)
    if len(shape) == 1:
        return "vector"
    if len(shape) == 2 and feature_axis == -1:
        return "set"
    if len(shape) in (2, 3) and feature_axis == 1:
        return "grid"
    return "vector"


def control_encoder(kind: str, control_shape: Sequence[int], channels: int, width: int = 128) -> nn.Module:
    """A generic control encoder of ``kind`` (see ``encoder_kind``) giving hints of ``channels``."""
    shape = tuple(control_shape)
    if kind == "vector":
        return VectorControlEncoder(math.prod(shape), channels, width)
    if kind == "set":
        return SetControlEncoder(shape[-1], channels, width)
    if kind == "grid":
        return GridControlEncoder(shape[0], channels, len(shape) - 1, min(width, 64))
    raise ValueError(f"unknown control encoder {kind!r}; known: {', '.join(ENCODERS)}")
