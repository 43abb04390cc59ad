"""The text3d domain's config sections: the render set (``data``), the prior's network, the distillation settings
(``distill``) and the evaluation settings (``evaluate``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RenderSetConfig:
    """What a cached render set contains; its JSON is the cache key.

    ``attributes``: size words a caption may carry ("a tall blue lamp"; names of ``data.ATTRIBUTES``), each shape
    getting one with probability ``attribute_rate``; ``holdout``: colour-shape pairs ("green chair") never rendered,
    so a prior's grasp of unseen combinations can be measured; ``ambient``: the range of the ambient light term (a
    matte-to-flat material variation), drawn per shape.
    """

    n_per_class: int = 24
    views_per_shape: int = 8
    size: int = 32
    voxel_resolution: int = 48
    n_samples: int = 64
    seed: int = 0
    color_jitter: float = 0.05
    attributes: tuple[str, ...] = ()
    attribute_rate: float = 0.6
    holdout: tuple[str, ...] = ()
    ambient: tuple[float, float] = (0.35, 0.35)

    def __post_init__(self) -> None:
        for name in ("attributes", "holdout", "ambient"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        lo, hi = self.ambient
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"ambient must be a range within [0, 1]; got {self.ambient}")

    def key(self) -> str:
        """The cache key: the first seven settings in order, then any later one that differs from its default."""
        values = asdict(self)
        defaults = RenderSetConfig.__dataclass_fields__
        head = list(values)[:7]
        tail = [f"{k}-{'+'.join(map(str, v)) if isinstance(v, tuple) else v}".replace(" ", "")
                for k, v in values.items() if k not in head and tuple_or(v) != tuple_or(defaults[k].default)]
        return "renders_" + "_".join(f"{values[k]}" for k in head) + "".join(f"_{t}" for t in tail)


def tuple_or(value: Any) -> Any:
    """``value`` as a tuple when it is a list (config files give lists), else unchanged."""
    return tuple(value) if isinstance(value, list) else value


@dataclass
class DistillConfig:
    """Settings of one text-to-3D optimisation (the ``quick`` preset's values are the defaults).

    Geometry terms: ``sparsity`` (mean opacity), ``orientation`` (Ref-NeRF's penalty on normals facing away from the
    camera), ``opacity_entropy`` (pixels pushed to fully opaque or empty, so the surface is not a fog near the mesh
    threshold); ``fine_resolution`` (voxel field only, 0: off): the grid is resampled to it half way through.
    """

    steps: int = 400
    batch: int = 4
    size: int = 32
    n_samples: int = 48
    field: str = "voxel"
    resolution: int = 32
    lr: float = 0.05
    guidance_scale: float = 20.0
    method: str = "sds"
    t_range: tuple[float, float] = (0.02, 0.98)
    t_anneal_to: float = 0.5
    weighting: str = "dreamfusion"
    sjc_sigma_range: tuple[float, float] = (0.05, 10.0)
    blob_density: float = 10.0
    blob_radius: float = 0.5
    sparsity: float = 0.0
    orientation: float = 0.0
    opacity_entropy: float = 0.0
    fine_resolution: int = 0
    refresh_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("sds", "sjc"):
            raise ValueError(f"unknown distillation method {self.method!r}; choose sds or sjc")
        if self.field not in ("voxel", "mlp"):
            raise ValueError(f"unknown field {self.field!r}; choose voxel or mlp")
        lo, hi = self.t_range
        if not 0 < lo < hi < 1 or not lo <= self.t_anneal_to <= hi:
            raise ValueError(f"need 0 < t_min < t_max < 1 and t_anneal_to in between; got {self.t_range}, {self.t_anneal_to}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be positive")
        if self.fine_resolution and (self.field != "voxel" or self.fine_resolution <= self.resolution):
            raise ValueError(f"fine_resolution {self.fine_resolution} needs the voxel field and must exceed resolution "
                             f"{self.resolution} (0: off)")
        if min(self.sparsity, self.orientation, self.opacity_entropy) < 0:
            raise ValueError("sparsity, orientation and opacity_entropy are weights: use values >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown distillation setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for key in ("t_range", "sjc_sigma_range"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class Network:
    """The ``network`` section: the prior's U-Net (``prior.build_prior_network``); ``tokens``: cross-attention to the
    prompt's token states beside the pooled embedding; ``patch``: pixels folded into channels per side."""

    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_levels: tuple[int, ...] = (2,)
    dropout: float = 0.0
    tokens: bool = False
    patch: int = 1


@dataclass
class Evaluation:
    """The ``evaluate`` section: views per prompt, the judge's training steps, and mesh extraction."""

    n_views: int = 8
    classifier_steps: int = 600
    mesh_resolution: int = 64
    mesh_threshold: float = 5.0
