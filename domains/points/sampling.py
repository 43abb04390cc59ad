"""Drawing point clouds (class-conditional, guided, anchored sets, completion, upsampling) and writing them as PLY
files with a preview and ``clouds.json``."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.domains.common.embeddings import NULL_LABEL
from polydiff.plugins.domain import Batch, SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from .anchored import anchored, default_context
from .completion import complete
from .data import MESH_SUFFIXES, Normalization, write_json
from .files import preview_grid, write_clouds
from .prepared import sampling_spec


def generate(run, request: SampleRequest) -> Samples:
    """Draw clouds of ``--points`` (default: the run's) in the normalised frame for ``request.labels`` (else
    unconditional). ``--complete``/``--upsample`` keep a given cloud's points fixed and generate the rest. A run trained
    on ``train_points``-point subsets denoises larger clouds in anchored sets of that size (``anchored.py``) when the
    run's ``sample.anchored`` is true; ``sample.anchor_context`` sets how many anchor points each chunk reads."""
    p, opts, n = sampling_spec(run.config), request.options, request.n
    n_points = int(run.config["data"]["n_points"]) if opts is None or opts.points is None else int(opts.points)
    if request.start is not None:  # an edit: clouds of the inputs' size
        n_points = int(request.start.shape[1])
    partial = given_cloud(opts, n_points) if opts is not None else None
    labels = request.labels if request.labels is not None else torch.full((n,), NULL_LABEL, dtype=torch.long)
    if bool((labels >= 0).any()) and not p.conditional:
        raise OptionError("--class", "this run was trained on an unlabelled set: sample without --class")
    labels = labels.to(run.device)
    set_size = run.config["data"]["train_points"]
    s = run.config["sample"]
    sets = int(set_size) if s["anchored"] and set_size and n_points > int(set_size) else None
    context = s["anchor_context"]
    sigmas = request.sigmas if request.sigmas is not None else run.sigmas(request.settings.steps)
    method = run.sampler_function(request.settings.sampler)
    out = []
    for start in range(0, n, 64):
        lab = labels[start:start + 64]
        b = len(lab)
        cond = {"label": lab} if p.conditional else None
        base = run.denoiser if sets is None else anchored(run.denoiser, sets, context, generator=request.generator)
        den = run.guided(cond, request.settings, base) if p.conditional and bool((lab >= 0).any()) else base
        if partial is not None:
            known = torch.as_tensor(p.normalization.apply(np.asarray(partial, dtype=np.float32)[None])[0]
                                    if p.normalization.mode == "global" else partial, dtype=torch.float32)
            pts = complete(den, known.to(run.device).expand(b, -1, -1), n_points, sigmas, method, cond=cond,
                           generator=request.generator)
        else:
            pts = run.draw(torch.empty(b, n_points, 3), request, cond=cond, denoiser=den, sigmas=sigmas)
        out.append(pts.float().cpu())
    classes = run.class_names()
    names = [classes[int(lab)] if classes and lab >= 0 else "any" for lab in labels.tolist()]
    return Samples({"points": torch.cat(out).numpy(), "labels": labels.cpu().numpy(), "classes": classes},
                   {"normalization": p.normalization.to_dict(), "n_points": n_points, "labels": names,
                    "anchored_set_size": sets,
                    "anchor_context": (default_context(sets) if context is None else context) if sets else None})


def given_cloud(opts: Any, n_points: int) -> np.ndarray | None:
    """The fixed points of ``--complete`` or ``--upsample`` (None when neither is given), checked against n_points."""
    from .files import read_cloud

    if opts.complete is not None and opts.upsample is not None:
        raise OptionError("--upsample", "give one of --complete and --upsample")
    given, flag = (opts.complete, "--complete") if opts.complete is not None else (opts.upsample, "--upsample")
    if given is None:
        return None
    try:
        known = read_cloud(given, n_points=opts.partial_points)
    except ValueError as exc:
        raise OptionError(flag, str(exc).replace("give n_points", "give --partial-points")) from None
    if len(known) >= n_points:
        raise OptionError("--points", f"{given} has {len(known)} points; ask for more with --points (now {n_points})")
    return known


def save_samples(samples: Samples, out: Path) -> list[Path]:
    """One PLY per cloud (data frame when the normalisation inverts), a PNG grid and ``clouds.json`` (normalisation,
    frame, classes, settings)."""
    norm = Normalization.from_dict(samples.meta["normalization"])
    frame = "data" if norm.mode == "global" else "normalised (per-shape: centred, unit bounding sphere)"
    pts = norm.invert(samples["points"])
    files = write_clouds(out, pts)
    titles = [name if name != "any" else f"#{i}" for i, name in enumerate(samples.meta["labels"])]
    files.append(preview_grid(samples["points"][:16], out / "preview.png", titles[:16]))
    settings = samples.settings.as_dict() if samples.settings else None
    meta = {"n_clouds": int(len(pts)), "ply_frame": frame, **samples.meta, "settings": settings}
    write_json(out / "clouds.json", json.loads(json.dumps(meta, default=str)))
    return files + [out / "clouds.json"]


def read_instances(path: Path, config: dict[str, Any]) -> Batch:
    """``personalize --instances`` / ``edit --input``: a point-cloud or mesh file, or a folder of them, as clouds of
    the run's ``n_points`` normalised like its training data; a file in a sub-folder named after a class carries it
    (``edit``'s source class)."""
    from polydiff.plugins.errors import UsageError

    from .files import read_cloud

    path, n_points, spec = Path(path), int(config["data"]["n_points"]), sampling_spec(config)
    if not path.is_dir():
        files = [path]
    else:  # a folder's other files (a sample folder's JSON and preview) are not inputs
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in MESH_SUFFIXES)
        if not files:
            raise UsageError(f"{path} holds no point-cloud or mesh files ({', '.join(MESH_SUFFIXES)})")
    read, skipped = [], []
    for i, f in enumerate(files):
        try:
            read.append((f, read_cloud(f, n_points=n_points, seed=i)))
        except ValueError as exc:
            skipped.append(str(exc))
    if not read:
        raise UsageError(skipped[0] if len(files) == 1 else f"no file in {path} could be read; first: {skipped[0]}")
    for reason in skipped:  # a broken file is named and skipped; the others go on
        print(f"skipped: {reason}", file=sys.stderr)
    files, clouds = [f for f, _ in read], np.stack([c for _, c in read])
    classes = list(spec.classes)
    labels = [classes.index(f.parent.name) if f.parent != path and f.parent.name in classes else NULL_LABEL
              for f in files]
    x = torch.as_tensor(spec.normalization.apply(clouds), dtype=torch.float32)
    return Batch(x, {"label": torch.tensor(labels, dtype=torch.long)})
