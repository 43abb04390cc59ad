"""Scoring point clouds: MMD, COV and 1-NNA (Chamfer, EMD) against the held-out set or a folder of meshes."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from polydiff.plugins.domain import EvaluateRequest

from .data import MeshLoad, load_folder, sample_clouds
from .metrics import evaluate_sets
from .plugin import SampleOptions
from .prepared import prepare, sampling_spec
from .sampling import generate


def reference_clouds(run, folder: str | Path, seed: int = 0) -> tuple[np.ndarray, MeshLoad]:
    """Surface samples of every mesh under ``folder`` ([M, n_points, 3], in the run's normalised frame) and the load
    report (broken or faceless files are skipped, with the reason)."""
    loaded = load_folder(folder)
    clouds = sample_clouds(loaded.meshes, int(run.config["data"]["n_points"]), seed)
    return sampling_spec(run.config).normalization.apply(clouds), loaded


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """MMD, COV and 1-NNA (CD and EMD, the latter exact on --emd-points subsamples) of generated clouds against at
    most n references: the held-out set (generated clouds copy its labels when the model is conditional) or the
    meshes of --reference (unconditional samples); --oracle adds the same metrics for training clouds."""
    opts = request.options
    p = prepare(run.config["data"])
    reference = None
    if opts.reference is not None:
        reference, loaded = reference_clouds(run, opts.reference, request.settings.seed or 0)
        print(f"reference {opts.reference}: {loaded.report()}", file=sys.stderr)
    pool, pool_labels = (p.test_points, p.test.labels) if reference is None else (reference, None)
    m = len(pool) if request.n is None else min(request.n, len(pool))
    pick = np.random.default_rng(0).permutation(len(pool))[:m]
    ref = torch.from_numpy(np.ascontiguousarray(pool[pick], dtype=np.float32))
    labels = torch.from_numpy(pool_labels[pick]) if p.conditional and pool_labels is not None else None
    metrics = tuple(opts.metrics.split(","))
    t0 = time.perf_counter()
    gen = generate(run, request.sample(m, labels, SampleOptions()))["points"]
    seconds = time.perf_counter() - t0
    result = evaluate_sets(torch.from_numpy(gen), ref, metrics, opts.emd_points)
    result["n_reference"] = float(m)
    result["sample_seconds_per_shape"] = seconds / m
    if opts.oracle:
        train_pick = np.random.default_rng(1).permutation(len(p.train))[:m]
        orc = evaluate_sets(torch.from_numpy(p.train_points[train_pick]), ref, metrics, opts.emd_points)
        result.update({f"oracle_{k}": v for k, v in orc.items() if k != "emd_points"})
    return result
