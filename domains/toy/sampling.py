"""Drawing, writing and scoring toy samples, with the core's guidance methods as the toy's own ``--guidance``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from polydiff.core import guidance
from polydiff.core.mixtures import energy_distance
from polydiff.domains.common.embeddings import NULL_LABEL
from polydiff.plugins.domain import EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from . import data
from .plugin import pair
from .preview import scatter_png


def _guide(run, request: SampleRequest, den, cond: torch.Tensor):
    """The toy's own guidance methods on top of ``den`` (the classifier-free guided denoiser)."""
    opts, method, n, dev = request.options, request.settings.guidance, request.n, run.device
    if method in ("dps", "inpaint") and opts.observe_x is None:
        raise OptionError("--observe-x", f"--guidance {method} needs the observed first coordinate")
    if method == "classifier":
        if opts.toward is None:
            raise OptionError("--toward", "--guidance classifier needs a target point X,Y")
        target = torch.tensor(pair(opts.toward), device=dev, dtype=torch.float32)

        def log_prob(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            var = 0.25 + sigma**2  # an exact Gaussian "classifier" around the target, broadened by the noise
            return -((x - target) ** 2).sum(1) / (2 * var)

        return guidance.classifier_guidance(den, log_prob, 1.0)
    if method == "dps":
        return guidance.dps(den, lambda x0: x0[:, :1], torch.full((n, 1), opts.observe_x, device=dev), 1.0)
    if method == "inpaint":
        known, mask = torch.zeros(n, 2, device=dev), torch.zeros(n, 2, device=dev)
        known[:, 0], mask[:, 0] = opts.observe_x, 1
        return guidance.inpaint(den, known, mask)
    if method == "compose":
        if not opts.compose:
            raise OptionError("--compose", "--guidance compose needs 'label:weight,...'")
        pairs = [(int(a), float(b)) for a, b in (item.split(":") for item in opts.compose.split(","))]
        conds = [(torch.full((n,), c, device=dev, dtype=torch.long), w) for c, w in pairs]
        return guidance.compose(run.denoiser, conds, torch.full_like(cond, NULL_LABEL))
    return den


def generate(run, request: SampleRequest) -> Samples:
    """Draw points; without a class each sample gets a uniformly drawn one (the built-in sets are balanced), which
    samples the data distribution through the conditional model, sharper than the null class it learnt from 10% of
    the data. ``--guidance sdedit`` edits the ``--init`` points instead (one sample per point)."""
    opts, dev, g = request.options, run.device, request.generator
    init = None
    if request.settings.guidance == "sdedit":
        if opts.init is None:
            raise OptionError("--init", "--guidance sdedit needs a .npy of points to edit")
        init = np.load(opts.init, allow_pickle=False)
        if init.ndim != 2 or init.shape[1] != 2:
            raise OptionError("--init", f"expected an array of shape [n, 2], got {init.shape}")
        request.n = len(init)
    n, k = request.n, len(run.class_names())
    if request.labels is not None:
        cond = request.labels.to(dev)
    elif k > 0:
        cond = torch.randint(0, k, (n,), generator=g, device=g.device if g is not None else dev).to(dev)
    else:
        cond = torch.full((n,), NULL_LABEL, device=dev, dtype=torch.long)
    den = run.guided(cond, request.settings) if request.labels is not None else run.denoiser
    if init is not None:
        x0 = torch.as_tensor(init, dtype=torch.float32, device=dev)
        pts = guidance.sdedit(den, x0, run.sigmas(request.settings.steps), opts.strength,
                              run.sampler_function(request.settings.sampler), cond=cond, generator=g)
    else:
        pts = run.draw(torch.empty(n, 2), request, cond=cond, denoiser=_guide(run, request, den, cond))
    title = f"toy {run.config['data']['dataset']}: {request.settings.sampler}, {request.settings.guidance}"
    return Samples({"points": pts.cpu().numpy(), "labels": cond.cpu().numpy()}, {"title": title})


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """``samples.npy`` [n, 2] and ``samples.png``, a scatter plot titled with the sampler and guidance."""
    npy = out / "samples.npy"
    np.save(npy, samples["points"])
    png = scatter_png(samples["points"], out / "samples.png", title=samples.meta.get("title", "polydiff toy samples"))
    return [npy, png]


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """Energy distance of n conditional samples (labels of held-out points) to n held-out points, next to the
    distance between two held-out halves (the floor that finite samples allow)."""
    n = request.n or 2000
    test = data.make(run.config["data"]["dataset"], "test", 2 * n)
    ref, ref2, labels = test[:n, :2], test[n:, :2], test[:n, 2].long().to(run.device)
    pts = run.draw(torch.empty(n, 2), request.sample(n), cond=labels, denoiser=run.denoiser)
    return {"energy_distance": float(energy_distance(pts.cpu(), ref)),
            "energy_distance_floor": float(energy_distance(ref2, ref))}
