"""What ``sample`` and ``evaluate`` do with a vocoder run: re-synthesise held-out clips from their log-mels, and score
that re-synthesis (the vocoder's floor) beside Griffin-Lim's with the SC09 judge."""
from __future__ import annotations

import time

import torch

from polydiff.plugins.domain import EvaluateRequest, SampleRequest, Samples
from polydiff.plugins.errors import OptionError

from .data import Prepared, prepare
from .evaluation import get_judge, reanalyse, score
from .vocoding import GriffinLim, Learned


def pick_clips(p: Prepared, labels: torch.Tensor | None, n: int) -> torch.Tensor:
    """Indices of ``n`` test clips: the first ones in order, or for each requested label the next clip of its class."""
    if labels is None or not bool((labels >= 0).any()):
        return torch.arange(n) % len(p.test)
    seen: dict[int, int] = {}
    out = []
    for lab in labels.tolist():
        pool = torch.nonzero(p.test.labels == lab).flatten() if lab >= 0 else torch.arange(len(p.test))
        if len(pool) == 0:
            raise ValueError(f"no held-out clip of class {lab}")
        out.append(int(pool[seen.get(lab, 0) % len(pool)]))
        seen[lab] = seen.get(lab, 0) + 1
    return torch.tensor(out)


def generate(run, request: SampleRequest) -> Samples:
    """``n`` held-out clips (of the requested classes) re-synthesised from their log-mels by this vocoder run."""
    opts = request.options
    for name in ("inpaint", "mask", "vocoder"):
        if opts is not None and getattr(opts, name, None) is not None:
            raise OptionError(f"--{name}", "a vocoder run re-synthesises held-out clips; use it with a mel model's "
                                           "sample --vocoder RUN")
    p = prepare(run.config["data"])
    idx = pick_clips(p, request.labels, request.n)
    vocoder = Learned(run, settings=request.settings, generator=request.generator)
    waves, again = reanalyse(p, p.test_x[idx], vocoder)
    labels = p.test.labels[idx].tolist()
    return Samples({"x": p.test_x[idx], "reanalysed": again, "log_mels": p.normalizer.denormalize(again[:, 0]),
                    "waves": waves, "labels": labels, "class_names": list(p.class_names),
                    "sample_rate": p.normalizer.config.sample_rate},
                   {"normalizer": p.normalizer.to_dict(), "vocoder": str(run.path),
                    "resynthesised": [p.test.speakers[i] for i in idx.tolist()]})


def evaluate(run, request: EvaluateRequest) -> dict[str, float]:
    """The vocoder's floor on the held-out clips (``vocoder_floor_``: accuracy, FID, IS, ...) beside the real clips
    (``real_``) and Griffin-Lim's floor (``floor_``), with the log-mel error of each re-synthesis and its time;
    ``-n`` takes that many test clips spread over the set."""
    opts = request.options
    p = prepare(run.config["data"])
    if request.n is not None and request.n < len(p.test):
        idx = torch.linspace(0, len(p.test) - 1, request.n).round().long().tolist()
        p = Prepared(p.train, p.test.subset(idx), p.normalizer, p.train_x, p.test_x[idx], p.conditional, p.valid,
                     p.valid_x)
    judge = get_judge(p, epochs=opts.classifier_epochs)
    gl = opts.gl_iters or int(run.config["sample"]["gl_iters"])
    floors = {"floor_": GriffinLim(p.normalizer.config, gl),
              "vocoder_floor_": Learned(run, settings=request.settings, generator=request.generator)}
    result = {"classifier_test_accuracy": judge.test_accuracy,
              **{f"real_{k}": v for k, v in score(judge, p.test_x, p.test.labels).items()}}
    for prefix, vocoder in floors.items():
        t0 = time.perf_counter()
        _, again = reanalyse(p, p.test_x, vocoder)
        seconds = (time.perf_counter() - t0) / len(p.test)
        result.update({f"{prefix}{k}": v for k, v in score(judge, again, p.test.labels).items()})
        result[f"{prefix}log_mel_l1"] = float(p.normalizer.std * (again - p.test_x).abs().mean())
        result[f"{prefix}seconds_per_clip"] = seconds
    return result
