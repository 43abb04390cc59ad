"""polydiff's core samplers next to k-diffusion's samplers and diffusers' schedulers, in one run (issue 2).

Every library drives the same exact Gaussian-mixture denoiser (``polydiff.core.mixtures``), so differences come from
the samplers alone. Two markdown tables are printed:

1. Sample quality: squared energy distance (x1000) of N samples to N fresh samples of the true mixture, per method and
   library, at NFE budgets 5, 10, 20 and 50, with the sample-vs-sample floor. Each method runs on two grids: the EDM
   Karras grid (rho 7, sigma 0.002..80) shared by polydiff and k-diffusion, and the grid diffusers' scheduler builds
   for itself, which polydiff is also run on, so every comparison is on one sigma grid. At a given NFE every library
   starts from the same noise and the stochastic methods draw the same noise stream (one seeded generator each).
2. Per-step overhead: a trivial denoiser (``x * 0.5``, batch 16 x 2), one thread, microseconds per denoiser evaluation
   (grid construction included, as a sampling call pays it), median of repeats after warm-up; the libraries are
   interleaved within each repeat and the per-repeat ratio ours / best peer is reported too, because the machine
   may be shared.

Peers: ``pip install k-diffusion diffusers`` (the ``bench`` extra). ``import k_diffusion`` runs its ``__init__``, which
pulls in clip, clean-fid, jsonmerge, wandb and more; only ``k_diffusion.sampling`` (and the ``k_diffusion.utils`` it
imports: torchvision, safetensors, pillow) is needed, so ``load_kdiffusion`` registers an empty ``k_diffusion`` package
whose ``__path__`` is the installed folder and imports just that submodule. So ``pip install --no-deps k-diffusion``
plus torchsde, trampoline, torchdiffeq, scipy, tqdm (sampling) and torchvision, safetensors, pillow (utils) is enough.

    .venv/bin/python benchmarks/samplers_vs_peers.py                 # both tables, both mixtures
    .venv/bin/python benchmarks/samplers_vs_peers.py --mixtures eight --skip-overhead
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import statistics
import sys
import time
import types
from importlib.metadata import version
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from polydiff.core.mixtures import GaussianMixture, eight_gaussians, energy_distance
from polydiff.core.samplers import nfe as count_nfe
from polydiff.core.samplers import sample, steps_for_nfe
from polydiff.core.schedules import karras_sigmas

Tensor = torch.Tensor
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
PEERS_HINT = ("pip install diffusers, and k-diffusion with what its sampling module imports "
              "(pip install --no-deps k-diffusion; pip install torchsde trampoline torchdiffeq torchvision scipy)")
# the DDPM training schedule diffusers' schedulers are built on (Ho et al. 2020)
HF_BASE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
           "prediction_type": "epsilon"}


# ---- peers ------------------------------------------------------------------------------------------------------

def load_kdiffusion() -> types.ModuleType:
    """``k_diffusion.sampling`` without running ``k_diffusion/__init__.py`` (a package stub over the install folder)."""
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'k_diffusion'")
        stub = types.ModuleType("k_diffusion")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = stub
    return importlib.import_module("k_diffusion.sampling")


def load_peers() -> tuple[types.ModuleType, types.ModuleType]:
    """(k_diffusion.sampling, diffusers), or exit with one line saying what to install."""
    try:
        kd = load_kdiffusion()
        import diffusers
        from diffusers.utils import logging as hf_logging
    except ImportError as err:
        raise SystemExit(f"samplers_vs_peers: a peer library is missing ({err}); {PEERS_HINT} to compare") from None
    hf_logging.set_verbosity_error()
    return kd, diffusers


# ---- methods ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One algorithm in the three libraries: our sampler name, k-diffusion's function, diffusers' scheduler."""

    ours: str
    kd: str
    hf: str
    hf_config: dict = field(default_factory=dict)
    hf_frame: bool = False  # the scheduler's sample lives in the sigma frame (k-diffusion style), not in VP space
    stochastic: bool = False
    kd_note: str = ""


KARRAS = {"use_karras_sigmas": True}
METHODS = {
    "euler": Method("euler", "sample_euler", "EulerDiscreteScheduler", KARRAS, hf_frame=True),
    "heun": Method("heun", "sample_heun", "HeunDiscreteScheduler", KARRAS, hf_frame=True),
    "dpmpp_2m": Method("dpmpp_2m", "sample_dpmpp_2m", "DPMSolverMultistepScheduler",
                       {**KARRAS, "algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": Method("dpmpp_2m_sde", "sample_dpmpp_2m_sde", "DPMSolverMultistepScheduler",
                           {**KARRAS, "algorithm_type": "sde-dpmsolver++", "solver_order": 2}, stochastic=True),
    "ddim": Method("ddim", "sample_euler", "DDIMScheduler", {"clip_sample": False, "timestep_spacing": "trailing"},
                   kd_note="k-diffusion has no DDIM; sample_euler is DDIM with eta = 0 (see the euler rows)"),
    "ddpm": Method("ddpm", "sample_euler_ancestral", "DDPMScheduler",
                   {"clip_sample": False, "timestep_spacing": "trailing"}, stochastic=True),
}


def make_scheduler(diffusers: types.ModuleType, m: Method):
    """diffusers' scheduler for ``m`` on the DDPM linear-beta training schedule."""
    return getattr(diffusers, m.hf)(**HF_BASE, **m.hf_config)


def hf_grid(sched, m: Method, steps: int) -> tuple[Tensor, float]:
    """The frame sigmas diffusers' scheduler walks for ``steps`` and the frame scale of its initial noise."""
    sched.set_timesteps(steps)
    if m.hf in ("DDIMScheduler", "DDPMScheduler"):
        ab = sched.alphas_cumprod.double()[sched.timesteps.long()]
        sig = torch.cat([((1 - ab) / ab).sqrt(), ab.new_zeros(1)])
    else:
        sig = torch.unique_consecutive(sched.sigmas.double())  # Heun repeats its inner sigmas
    scale = float(sched.init_noise_sigma) if m.hf_frame else math.sqrt(1 + float(sig[0]) ** 2)
    return sig.float(), scale


def eps_model(gm: GaussianMixture, alphas_cumprod: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """The exact denoiser as diffusers' eps-prediction model: (x_vp, timestep) -> eps.

    A fractional timestep is mapped to sigma by the interpolation diffusers itself uses (linear in log sigma between
    training steps), so the model sees the sigma the scheduler meant whenever the timestep carries it exactly.
    """
    log_sig = (((1 - alphas_cumprod) / alphas_cumprod).sqrt()).double().log()
    last = len(log_sig) - 1

    def model(x_vp: Tensor, t: Tensor) -> Tensor:
        tf = float(t)
        lo = min(max(int(math.floor(tf)), 0), last - 1)
        w = min(max(tf - lo, 0.0), 1.0)
        sigma = math.exp((1 - w) * float(log_sig[lo]) + w * float(log_sig[lo + 1]))
        x = x_vp.double() * math.sqrt(1 + sigma**2)
        denoised = gm(x, torch.full((x.shape[0],), sigma, dtype=torch.float64))
        return ((x - denoised) / sigma).to(x_vp.dtype)

    return model


@torch.no_grad()
def run_diffusers(sched, m: Method, model, z: Tensor, steps: int, generator: torch.Generator | None) -> Tensor:
    """diffusers' documented denoising loop (set_timesteps, init_noise_sigma, scale_model_input, step)."""
    sched.set_timesteps(steps)
    x = z * sched.init_noise_sigma
    kw = {"generator": generator} if m.stochastic else {}
    for t in sched.timesteps:
        eps = model(sched.scale_model_input(x, t), t)
        x = sched.step(eps, t, x, return_dict=False, **kw)[0]
    return x


def run_kdiffusion(kd: types.ModuleType, m: Method, model, x: Tensor, sigmas: Tensor,
                   generator: torch.Generator | None) -> Tensor:
    """k-diffusion's sampler; stochastic ones draw i.i.d. Gaussian noise from ``generator`` (global RNG if None)."""
    kw = {}
    if m.stochastic:
        kw["noise_sampler"] = ((lambda s, s_next: torch.randn(x.shape, generator=generator, dtype=x.dtype))
                               if generator is not None else kd.default_noise_sampler(x))
    return getattr(kd, m.kd)(model, x, sigmas, disable=True, **kw)


# ---- quality ----------------------------------------------------------------------------------------------------

def anisotropic_mixture() -> GaussianMixture:
    """Five thin Gaussians (std 0.6 x 0.03, long axis tangent) on a radius-1.5 circle, a tight centre, unequal weights.

    Stiffer than the 8 Gaussians: the 0.03 short axes need small steps at low sigma, the weights test mode balance.
    """
    ang = torch.arange(5, dtype=torch.float64) * (2 * math.pi / 5)
    tangent = torch.stack([-ang.sin(), ang.cos()], 1)
    radial = torch.stack([ang.cos(), ang.sin()], 1)
    covs = 0.6**2 * tangent[:, :, None] * tangent[:, None, :] + 0.03**2 * radial[:, :, None] * radial[:, None, :]
    means = torch.cat([1.5 * radial, torch.zeros(1, 2, dtype=torch.float64)])
    covs = torch.cat([covs, 0.02**2 * torch.eye(2, dtype=torch.float64)[None]])
    return GaussianMixture(means, covs, torch.tensor([0.3, 0.2, 0.15, 0.1, 0.1, 0.15]))


MIXTURES = {
    "eight": ("8 Gaussians (radius 2, std 0.1)", eight_gaussians),
    "aniso": ("anisotropic: 5 thin Gaussians (0.6 x 0.03) + tight centre, unequal weights", anisotropic_mixture),
}


def mean_distance(x: Tensor, y: Tensor, rows: int = 500) -> Tensor:
    """E|X - Y| over all pairs, in blocks of ``rows`` (no n x n matrix: faster and lighter than one cdist)."""
    return sum(torch.cdist(a, y).sum() for a in x.split(rows)) / (x.shape[0] * y.shape[0])


def mean_self_distance(x: Tensor, rows: int = 500) -> Tensor:
    """E|X - X'| over all ordered pairs (diagonal included), from the upper block triangle only."""
    parts = x.split(rows)
    total = x.new_zeros(())
    for i, a in enumerate(parts):
        total = total + torch.cdist(a, a).sum()
        for b in parts[i + 1:]:
            total = total + 2 * torch.cdist(a, b).sum()
    return total / x.shape[0] ** 2


class Reference:
    """Energy distance to a fixed true sample, with the reference's own term computed once."""

    def __init__(self, y: Tensor) -> None:
        self.y = y.double()
        self.yy = mean_self_distance(self.y)

    def distance(self, x: Tensor) -> float:
        """Squared energy distance (V-statistic) to the reference, as ``energy_distance``; nan if x is not finite."""
        x = x.double()
        if not torch.isfinite(x).all():
            return float("nan")
        return float(2 * mean_distance(x, self.y) - mean_self_distance(x) - self.yy)


def quality_rows(gm: GaussianMixture, kd, diffusers, n: int, budgets: list[int], log) -> tuple[dict, float]:
    """{(method, library, grid): {budget: ED}} and the sample-vs-sample floor, for one mixture."""
    ref = Reference(gm.sample(n, torch.Generator().manual_seed(0))[0])
    other = gm.sample(n, torch.Generator().manual_seed(1))[0]
    floor = float(energy_distance(other, ref.y))
    if abs(ref.distance(other) - floor) > 1e-9:
        raise RuntimeError("the cached energy distance disagrees with polydiff.core.mixtures.energy_distance")
    den = lambda x, sigma, cond=None: gm(x, sigma)  # noqa: E731
    kd_den = lambda x, sigma: gm(x, sigma)  # noqa: E731
    rows: dict = {}
    for name, m in METHODS.items():
        sched = make_scheduler(diffusers, m)
        model = eps_model(gm, sched.alphas_cumprod)
        for budget in budgets:
            steps = steps_for_nfe(m.ours, budget)
            z = torch.randn(n, gm.dim, generator=torch.Generator().manual_seed(1000 + budget))
            gen = lambda: torch.Generator().manual_seed(2000 + budget)  # noqa: E731
            runs = {}
            if not m.kd_note:  # on the Karras grid DDIM (eta 0) is the Euler step: see the euler rows
                sig = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
                ksig = kd.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
                runs[("polydiff", "karras")] = lambda: sample(den, z * sig[0], sig, m.ours, generator=gen())
                runs[("k-diffusion", "karras")] = lambda: run_kdiffusion(kd, m, kd_den, z * ksig[0], ksig, gen())
            hsig, scale = hf_grid(sched, m, steps)
            runs[("diffusers", "diffusers")] = lambda: run_diffusers(sched, m, model, z, steps, gen())
            runs[("polydiff", "diffusers")] = lambda: sample(den, z * scale, hsig, m.ours, generator=gen())
            for (lib, grid), fn in runs.items():
                rows.setdefault((name, lib, grid), {})[budget] = ref.distance(fn())
            log(f"{name} NFE {budget}")
    return rows, floor


def quality_table(title: str, rows: dict, floor: float, budgets: list[int]) -> str:
    heads = ["method", "library", "sigma grid"] + [f"NFE {b}" for b in budgets]
    lines = [f"**{title}**: energy distance x1000 to the true mixture (lower is better)", "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for (name, lib, grid), vals in rows.items():
        grid_label = "Karras 0.002..80" if grid == "karras" else "diffusers' own"
        cells = [f"{1000 * vals[b]:.2f}" for b in budgets]
        lines.append(f"| {name} | {lib} | {grid_label} | " + " | ".join(cells) + " |")
    lines.append(f"| *floor* | true vs true sample | | " + " | ".join([f"{1000 * floor:.2f}"] * len(budgets)) + " |")
    return "\n".join(lines)


# ---- overhead ---------------------------------------------------------------------------------------------------

def overhead_calls(kd, diffusers, m: Method, steps: int, z: Tensor) -> dict[str, Callable[[], Tensor]]:
    """One full sampling call per library with the trivial denoiser, grid construction included."""
    sched = make_scheduler(diffusers, m)
    gen = torch.Generator().manual_seed(0)
    ours = lambda x, sigma, cond=None: x * 0.5  # noqa: E731
    theirs_kd = lambda x, sigma: x * 0.5  # noqa: E731
    theirs_hf = lambda x, t: x * 0.5  # noqa: E731

    def polydiff_call() -> Tensor:
        sig = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
        return sample(ours, z * sig[0], sig, m.ours, generator=gen)

    def kd_call() -> Tensor:
        sig = kd.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
        return run_kdiffusion(kd, m, theirs_kd, z * sig[0], sig, None)

    def hf_call() -> Tensor:
        return run_diffusers(sched, m, theirs_hf, z, steps, gen)

    return {"polydiff": polydiff_call, "k-diffusion": kd_call, "diffusers": hf_call}


def overhead_rows(kd, diffusers, budget: int, repeats: int, inner: int, log) -> dict:
    """{clock: {method: {library: [seconds per NFE, one per repeat]}}} for the ``cpu`` and ``wall`` clocks.

    The libraries are interleaved (rotated) within each repeat. ``cpu`` is this thread's CPU time (torch runs on one
    thread here): on a shared machine, wall time also counts the time a call waits preempted, which a long call
    (diffusers) suffers more often than a short one, so wall time alone would favour the faster library.
    """
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    out: dict = {"cpu": {}, "wall": {}}
    for name, m in METHODS.items():
        steps = steps_for_nfe(m.ours, budget)
        evals = count_nfe(m.ours, steps)
        calls = overhead_calls(kd, diffusers, m, steps, z)
        for fn in calls.values():
            for _ in range(3):
                fn()
        libs = list(calls)
        cpu = {lib: [] for lib in libs}
        wall = {lib: [] for lib in libs}
        for r in range(repeats):
            for lib in libs[r % len(libs):] + libs[:r % len(libs)]:
                c0, w0 = time.thread_time(), time.perf_counter()
                for _ in range(inner):
                    calls[lib]()
                cpu[lib].append((time.thread_time() - c0) / (inner * evals))
                wall[lib].append((time.perf_counter() - w0) / (inner * evals))
        out["cpu"][name], out["wall"][name] = cpu, wall
        log(f"overhead {name}")
    return out


def _ratios(t: dict) -> tuple[float, float]:
    """ours / best peer: from the medians, and the median of the per-repeat ratios."""
    med = {lib: statistics.median(v) for lib, v in t.items()}
    per_repeat = statistics.median(p / min(k, h) for p, k, h in zip(t["polydiff"], t["k-diffusion"], t["diffusers"]))
    return med["polydiff"] / min(med["k-diffusion"], med["diffusers"]), per_repeat


def overhead_table(rows: dict, budget: int, repeats: int) -> str:
    lines = [f"**Per-step overhead**: trivial denoiser (x * 0.5, batch 16 x 2), 1 thread, NFE budget {budget}; "
             f"CPU microseconds per denoiser evaluation, median of {repeats} interleaved repeats (lower is better; "
             "ratio < 1: polydiff is faster)", "",
             "| method | polydiff | k-diffusion | diffusers | ours / best peer (medians) "
             "| ours / best peer (per-repeat) | same, wall clock (per-repeat) |", "|---|---|---|---|---|---|---|"]
    for name, t in rows["cpu"].items():
        med = {lib: 1e6 * statistics.median(v) for lib, v in t.items()}
        ratio, per_repeat = _ratios(t)
        wall = _ratios(rows["wall"][name])[1]
        kd_cell = f"{med['k-diffusion']:.1f}" + (" (sample_euler)" if METHODS[name].kd_note else "")
        lines.append(f"| {name} | {med['polydiff']:.1f} | {kd_cell} | {med['diffusers']:.1f} "
                     f"| {ratio:.2f} | {per_repeat:.2f} | {wall:.2f} |")
    return "\n".join(lines)


FOOTNOTES = """Notes:
- Same method, same sigma grid: compare polydiff with k-diffusion on the Karras grid (rho 7, sigma 0.002..80), and
  polydiff with diffusers on diffusers' own grid. diffusers' schedulers discretise a 1000-step DDPM training schedule
  (linear betas 1e-4..0.02), so its Karras grid spans that schedule's sigma range (0.0100..157.4), not 0.002..80;
  DDIM/DDPM use `timestep_spacing="trailing"` (integer timesteps 999, 999 - 1000/n, ...; better than the default
  "leading" at few steps) with `clip_sample=False` (the default True clips x0 to [-1, 1]).
- diffusers drives an eps-prediction model at a timestep: the exact denoiser is wrapped as x_vp, t -> sigma(t) by
  diffusers' own log-sigma interpolation, x = x_vp sqrt(1 + sigma^2), eps = (x - D(x, sigma)) / sigma. Euler and Heun
  pass fractional timesteps, so the model sees the scheduler's sigma exactly; DPMSolverMultistepScheduler rounds its
  Karras timesteps to integers, so the model is evaluated at a sigma that differs from the one the solver steps with.
- ddim: k-diffusion has no DDIM; on a sigma grid DDIM with eta 0 is exactly the Euler step, so polydiff and
  k-diffusion on the Karras grid are the euler rows (and the overhead table times k-diffusion's `sample_euler`).
- heun uses 2n - 1 evaluations for n steps (NFE 5, 9, 19, 49 for budgets 5, 10, 20, 50), in all three libraries.
- ddpm is ancestral sampling with the posterior variance (diffusers `fixed_small`; k-diffusion `sample_euler_ancestral`,
  eta 1, is the same update). Stochastic methods in all libraries draw i.i.d. noise from one seeded generator per NFE
  (k-diffusion through `noise_sampler`; its default for dpmpp_2m_sde is a Brownian tree, not used here).
- Overhead: the whole sampling call is timed (grid construction, `set_timesteps`, loop), divided by the NFE; diffusers
  runs its documented loop with `return_dict=False`, k-diffusion with `disable=True`, polydiff through `sample()`.
  CPU time of the sampling thread is the main clock: on a shared machine wall time also counts preemption, which
  long calls suffer more; the wall-clock ratio is shown for comparison."""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="samples per energy distance")
    p.add_argument("--nfe", default="5,10,20,50", help="comma-separated NFE budgets")
    p.add_argument("--mixtures", default="eight,aniso", help=f"comma-separated, from {', '.join(MIXTURES)}")
    p.add_argument("--overhead-nfe", type=int, default=20)
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--inner", type=int, default=1, help="sampling calls per timed block")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    args = p.parse_args(argv)
    budgets = [int(b) for b in args.nfe.split(",")]
    mixtures = args.mixtures.split(",")
    unknown = [k for k in mixtures if k not in MIXTURES]
    if unknown:
        raise SystemExit(f"samplers_vs_peers: unknown mixture {unknown[0]!r}; known: {', '.join(MIXTURES)}")
    torch.set_num_threads(1)
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    kd, diffusers = load_peers()
    log("peers loaded")
    print(f"polydiff core samplers vs k-diffusion {version('k-diffusion')} and diffusers {diffusers.__version__}; "
          f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    if not args.skip_quality:
        for key in mixtures:
            title, make = MIXTURES[key]
            rows, floor = quality_rows(make(), kd, diffusers, args.n, budgets, log)
            print(quality_table(f"{title}, N = {args.n}", rows, floor, budgets) + "\n", flush=True)
    if not args.skip_overhead:
        rows = overhead_rows(kd, diffusers, args.overhead_nfe, args.repeats, args.inner, log)
        print(overhead_table(rows, args.overhead_nfe, args.repeats) + "\n", flush=True)
    print(FOOTNOTES)
    log(f"done, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
