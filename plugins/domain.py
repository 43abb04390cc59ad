"""The domain contract: what a domain declares and the typed values that pass between it and polydiff.

A domain plugin returns a ``Domain`` from its ``polydiff_register_domains`` hook. It *declares*; polydiff *builds*:
the training loop, ``polydiff <name> train | sample | evaluate | export | info``, conditioning on class labels with
classifier-free guidance, run-folder safety, ``polydiff demo``, ``examples/cross_domain.py`` and the Python API
(``Run.sample``, ``Run.evaluate``) all come from these declarations, with no CLI code in the domain. Read this file,
``plugins/options.py`` (typed options), ``plugins/config.py`` (config sections) and ``domains/toy/`` or
``examples/polydiff-ecg/`` (a complete third-party domain) and you know the whole contract.

The flow of one ``sample`` command::

    options (declared dataclass)  -> Run.sample(n, label=..., **options)
      -> Run.settings(...)            sampler, steps, guidance resolved once against the run's ``sample`` section
      -> Domain.generate(run, SampleRequest) -> Samples     the domain draws with ``run.draw`` (guidance applied)
      -> Domain.save_samples(samples, out) -> files          its file formats and a PNG preview
      -> samples.json                                         settings, options, the domain's ``meta``, the files
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from polydiff.core.noise import NoiseFn

    from .runs import Run

NULL_LABEL = -1
"""The label meaning "no class" in ``SampleRequest.labels`` (classifier-free guidance's null condition)."""


@dataclass
class Batch:
    """A training batch: clean data ``x0``, its condition, and for ragged data the sample of each row.

    ``group[i]`` is the index of the sample that row i belongs to (atom -> molecule); None when rows are samples.
    """

    x0: "torch.Tensor"
    cond: Any = None
    group: "torch.Tensor | None" = None

    def to(self, device: "torch.device | str") -> "Batch":
        import torch

        def move(v: Any) -> Any:
            if torch.is_tensor(v):
                return v.to(device, non_blocking=True)
            if isinstance(v, dict):
                return {k: move(u) for k, u in v.items()}
            return v.to(device) if hasattr(v, "to") else v

        return Batch(move(self.x0), move(self.cond), move(self.group))


@dataclass(frozen=True)
class SampleSettings:
    """How samples are drawn, resolved once by ``Run.settings`` and recorded in ``samples.json``."""

    sampler: str
    steps: int
    guidance: str
    guidance_scale: float
    seed: int | None = None
    precision: str = "fp32"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampleRequest:
    """What ``Domain.generate`` is asked for: ``n`` samples drawn with ``settings``.

    ``labels`` [n] holds the class of each sample (``NULL_LABEL`` = unconditional) when the command named a class,
    else None and the domain chooses (unconditional, or its own default). ``options`` is an instance of the domain's
    declared ``sample`` options (None when it declares none). ``sigmas`` overrides the grid of ``settings.steps``.
    ``explicit`` names the settings the caller chose (the others are the run's defaults), for a domain whose
    setting means something else in one mode (text3d's distillation guidance scale).
    """

    n: int
    settings: SampleSettings
    generator: "torch.Generator | None" = None
    labels: "torch.Tensor | None" = None
    options: Any = None
    progress: bool = False
    sigmas: "torch.Tensor | None" = None
    explicit: frozenset[str] = frozenset()
    start: "torch.Tensor | None" = None
    """Where sampling starts at the grid's first level instead of fresh noise (``edit``: the inverted input, one row
    per sample). ``Run.draw`` takes its rows in order, so a domain drawing in chunks gets them chunk by chunk; the
    domain draws samples shaped like it (e.g. points: ``start.shape[1]`` points per cloud)."""
    step_noise: "torch.Tensor | None" = None
    """Per-step unit noises [steps, n, ...] for a stochastic sampler started at ``start`` (``edit --method ddpm``:
    the edit-friendly noise maps), taken with the rows of ``start``."""
    taken: int = 0
    """Rows of ``start`` that ``Run.draw`` has used."""

    def next_start(self, n: int) -> "tuple[torch.Tensor, torch.Tensor | None]":
        """The next ``n`` rows of ``start`` (``Run.draw``'s starting point) and of ``step_noise`` (None without)."""
        rows = slice(self.taken, self.taken + n)
        self.taken += n
        return self.start[rows], None if self.step_noise is None else self.step_noise[:, rows]


@dataclass
class EvaluateRequest:
    """What ``Domain.evaluate`` is asked for: metrics of samples drawn with ``settings`` against held-out data.

    ``n`` is the number of samples or references (None: the domain's own default, e.g. the whole test split).
    """

    n: int | None
    settings: SampleSettings
    generator: "torch.Generator | None" = None
    options: Any = None
    progress: bool = False
    explicit: frozenset[str] = frozenset()

    def sample(self, n: int, labels: "torch.Tensor | None" = None, options: Any = None) -> SampleRequest:
        """The request for drawing ``n`` samples with these settings (evaluation's own generation)."""
        return SampleRequest(n, self.settings, self.generator, labels, options, self.progress, explicit=self.explicit)


@dataclass
class Samples:
    """What ``Domain.generate`` returns: the domain's payload and the facts stated next to the files.

    ``data`` holds whatever ``save_samples`` writes (arrays, tensors, RDKit molecules); ``meta`` is JSON-ready and goes
    into ``samples.json`` beside polydiff's own keys (``domain``, ``run``, ``settings``, ``options``, ``command``,
    ``class``, ``files``: reserved) (normalisation, class of each sample, timings, skipped inputs). ``settings`` is
    filled in by ``Run.sample``.
    """

    data: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    settings: SampleSettings | None = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


@dataclass(frozen=True)
class Classes:
    """Class-label conditioning. Declaring it gives ``sample`` the option ``--class NAME|INDEX|all`` (and
    ``--guidance-scale``); polydiff resolves names and indices into ``SampleRequest.labels``."""

    names: Callable[[dict[str, Any]], list[str]]
    """``(run_config) -> class names`` (usually from the run's ``fitted`` facts); [] when the run is unconditional."""
    flags: tuple[str, ...] = ("--class",)
    help: str = "Class name or index, or 'all' to cycle through the classes (default: unconditional)."


@dataclass(frozen=True)
class DataSource:
    """What ``train --data SOURCE`` accepts: a built-in set name or a path, mapped onto the ``data`` config."""

    to_config: Callable[[str], dict[str, Any]]
    """``(value) -> overrides of the data section``; raises ValueError saying what is accepted."""
    help: str
    flags: tuple[str, ...] = ("--data",)


@dataclass(frozen=True)
class Count:
    """What ``-n`` means for a command of this domain (number of clips, conformers per molecule, ...)."""

    default: int | None
    help: str
    flags: tuple[str, ...] = ("-n", "--n")


@dataclass(frozen=True)
class Verb:
    """A domain's extra command that is one of the built ones under another name: ``fixed`` option values (hidden),
    ``defaults`` other defaults, and ``argument`` an option taken as a required positional argument (text3d's
    ``generate PROMPT`` is ``sample --prompt PROMPT``)."""

    command: str
    help: str
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    argument: str | None = None


@dataclass(frozen=True)
class Control:
    """A kind of control signal for ``train-control --control KIND`` (ControlNet, ``polydiff.core.control``)."""

    compute: Callable[[Batch, "torch.Generator"], "torch.Tensor"]
    """``(clean batch, generator) -> controls [B, ...]``, one per example (training, and ``evaluate`` on the test
    split); the generator for random views (points: the camera of the partial scan)."""
    help: str = ""
    read: Callable[[Path, dict[str, Any]], "torch.Tensor"] | None = None
    """``(file, run_config) -> controls [m, ...]`` for ``sample --control FILE``; None: a .npy/.pt array."""
    encoder: Callable[[list[int], int, int], "nn.Module"] | None = None
    """``(control_shape, channels, feature_axis) -> module`` mapping controls to the hint added to the network's first
    feature ([B, C] or that feature's shape); None: the generic encoder for the control's shape."""


@dataclass
class Domain:
    """What a domain supplies. The first block is required; the rest have working defaults."""

    name: str
    """Short name: the CLI sub-app (``polydiff <name> ...``) and the key in the registry."""
    summary: str
    """One line for ``polydiff --help`` and ``polydiff plugins``."""
    presets: dict[str, dict[str, Any]]
    """Configurations by name, at least ``quick`` (minutes on a CPU); each is merged over the declared defaults."""
    build_dataset: Callable[[dict[str, Any], str], Any]
    """``(data_section, split) -> dataset`` for split ``train``/``val``/``test``: a Tensor of examples or a Dataset."""
    build_network: Callable[[dict[str, Any]], "nn.Module"]
    """``(full_config) -> F(x_in, c_noise, cond)``; c_noise has one entry per leading row of x_in."""
    generate: Callable[["Run", SampleRequest], Samples]
    """Draw ``request.n`` samples (with ``run.draw``); returns ``Samples``."""
    save_samples: Callable[[Samples, Path], list[Path]]
    """Write the domain's file formats and a PNG preview into the folder; returns the files written."""
    evaluate: Callable[["Run", EvaluateRequest], dict[str, float]]
    """The domain's own metrics of samples against held-out data."""
    primary_metric: str
    """The metric ``examples/cross_domain.py`` tabulates; ``lower_is_better`` says which way is good."""
    lower_is_better: bool = True

    sections: dict[str, type] = field(default_factory=dict)
    """Dataclasses of the domain's config sections: ``data`` and ``network`` (and ``sample`` for extra sampling keys,
    or more sections such as text3d's ``distill``); every key is validated against them (``plugins/config.py``)."""
    options: dict[str, type] = field(default_factory=dict)
    """Option dataclasses by command (``train``, ``sample``, ``evaluate``), made with ``plugins.options.option``:
    they become CLI options and keyword arguments of ``Run.sample`` / ``Run.evaluate``. A ``train`` option names the
    config key it sets (``option(..., config="data.dataset")``)."""
    counts: dict[str, Count] = field(default_factory=dict)
    """What ``-n`` means for ``sample`` and ``evaluate`` (default: "Number of samples", 16 / the domain's choice)."""
    classes: Classes | None = None
    """Class-label conditioning (``--class``); None for a domain without class labels."""
    data_source: DataSource | None = None
    """What ``train --data`` accepts; None when the domain has one fixed data set."""
    verbs: dict[str, Verb] = field(default_factory=dict)
    """Extra command names that are built commands with fixed options (``generate PROMPT``)."""
    guidance: dict[str, str] = field(default_factory=dict)
    """Guidance methods the domain itself implements in ``generate`` (name -> help), besides the registered ones
    that ``Run.guided`` applies for every domain."""

    collate: Callable[[list[Any]], Batch] | None = None
    """Items of a Dataset -> Batch; None when ``build_dataset`` returns a Tensor (batches are its rows)."""
    noise: Callable[[Batch], "NoiseFn"] | None = None
    """Noise for a batch (e.g. zero centre of mass per molecule); None means i.i.d. Gaussian."""
    drop_cond: Callable[[Any, float, "torch.Generator"], Any] | None = None
    """Replace conditions by the null condition with probability p (classifier-free guidance training)."""
    null_cond: Callable[[Any], Any] | None = None
    """The null (unconditional) version of a condition, for classifier-free guidance at sampling time."""
    loss: Callable[["nn.Module", Batch, "torch.Generator", dict[str, Any]], "torch.Tensor"] | None = None
    """Override of the default denoising / flow-matching loss built from the ``diffusion`` section."""
    fit_data: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """``(data_section) -> facts``: what is fitted on the training data and needed to sample (a normalisation, class
    names), stored as the run config's ``fitted`` section before training so a shipped run samples without its data;
    read back with ``run.fitted``."""
    shipped_run: Path | None = None
    """A run folder shipped inside the package (config.json + checkpoint/), used when ``--run`` is not given."""
    demo: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``Run.sample`` in ``polydiff demo`` (e.g. ``{"n": 1}`` when one sample takes minutes)."""
    sweep: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``Run.evaluate`` in sampler sweeps (``examples/cross_domain.py``)."""
    read_instances: Callable[[Path, dict[str, Any]], Batch] | None = None
    """``(path, run_config) -> Batch``: a few of the user's own examples (a file or folder in the domain's format) in
    the network's space, normalised as the run's data (its ``fitted`` facts), for ``personalize --instances`` and
    ``edit --input``. Its ``cond`` may carry class labels (``edit`` takes them as the source class) or be None.
    None: the domain cannot read examples, and those commands say so."""
    train_view: Callable[[Batch, dict[str, Any], "torch.Generator"], Batch] | None = None
    """``(batch, run_config, generator) -> batch``: what one training step sees of whole examples that did not come
    from ``build_dataset`` (``personalize``'s instances and prior samples), as ``build_dataset``'s train split would
    show them (points: a fresh random ``train_points`` of each cloud). None: the whole examples."""
    label_cond: Callable[["torch.Tensor"], Any] | None = None
    """Class labels [n] -> the condition its network takes (e.g. ``{"label": labels}``); None: the label tensor
    itself. Personalization and editing build conditions with it for examples read without one."""
    autoencoder: Callable[[dict[str, Any]], "nn.Module"] | None = None
    """``(autoencoder run config) -> module`` following ``polydiff.core.autoencoders.Autoencoder`` (``posterior``,
    ``encode``, ``decode``; optionally ``loss``) for ``train-autoencoder``; its settings are the config's
    ``autoencoder.args``. None: the generic autoencoder for the data's shape (MLP for vectors, conv for grids)."""
    latent_network: Callable[[dict[str, Any]], "nn.Module"] | None = None
    """``(latent run config) -> F(z_in, c_noise, cond)`` over latents shaped ``config["latent"]["shape"]``, for
    ``train --latent AE``. None: ``build_network`` when latents have the data's shape, else a generic network."""
    controls: dict[str, Control] = field(default_factory=dict)
    """Control signals computed from clean examples, by kind (``train-control --control KIND``); the network must
    expose its residual features (``polydiff.core.control``)."""

    def preset(self, name: str) -> dict[str, Any]:
        """The preset ``name``, or a usage error listing the presets."""
        from .errors import OptionError

        if name not in self.presets:
            raise OptionError("--preset", f"domain {self.name!r} has no preset {name!r}; presets: {', '.join(self.presets)}")
        return self.presets[name]

    def count(self, command: str) -> Count:
        """What ``-n`` means for ``command``."""
        default = Count(16 if command == "sample" else None, "Number of samples." if command == "sample"
                        else "Number of samples to evaluate (default: the domain's).")
        return self.counts.get(command, default)
