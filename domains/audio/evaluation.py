"""DiffWave's SC09 protocol with our own judge: a digit classifier on real training clips scores real test clips,
their re-synthesis through a vocoder (Griffin-Lim or a learned one: the floor of a mel model using it) and generated
clips.

Every set of waveforms is analysed the same way (log-mel, the model's normalisation) before the classifier sees it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .cache import cache_dir
from .classifier import DigitClassifier, predict, train_classifier
from .data import Prepared
from .features import LogMel
from .metrics import accuracy, am_score, fid, inception_score, kmeans, modified_inception_score, ndb


@dataclass
class Judge:
    """The trained classifier with the training set's features, class marginal and NDB bins."""

    model: DigitClassifier
    train_features: torch.Tensor
    train_marginal: torch.Tensor
    centroids: torch.Tensor
    test_accuracy: float


def _batch(n: int) -> int:
    """Mini-batch of the judge: small sets get small batches so that 20 epochs are still a few hundred steps."""
    return max(8, min(64, n // 10))


def _key(p: Prepared, epochs: int, seed: int) -> str:
    h = hashlib.sha1()
    h.update(p.train.waves[:, ::97].contiguous().numpy().tobytes())
    h.update(json.dumps([p.normalizer.to_dict(), epochs, seed, len(p.train), _batch(len(p.train))]).encode())
    return h.hexdigest()[:12]


def get_judge(p: Prepared, epochs: int = 20, seed: int = 0, ndb_bins: int = 20, log: bool = True) -> Judge:
    """Train (or load from the cache) the classifier on the training mels; bins for NDB by k-means on its features."""
    if p.train.num_classes == 0:
        raise ValueError("the SC09 metrics need labelled clips (a digit set, or a folder with one sub-folder per class)")
    folder = cache_dir() / f"classifier_{_key(p, epochs, seed)}"
    if (folder / "classifier.json").is_file():
        model = DigitClassifier.load(folder)
    else:
        model = train_classifier(p.train_x[:, 0], p.train.labels, num_classes=p.train.num_classes, epochs=epochs,
                                 batch=_batch(len(p.train)), seed=seed, log=log)
        model.save(folder)
    probs_tr, feats_tr = predict(model, p.train_x[:, 0])
    probs_te, _ = predict(model, p.test_x[:, 0])
    k = max(2, min(ndb_bins, len(feats_tr) // 5))
    return Judge(model, feats_tr, probs_tr.mean(0), kmeans(feats_tr, k, seed=seed), accuracy(probs_te, p.test.labels))


def score(judge: Judge, x_norm: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
    """All metrics for normalised log-mels [N, 1, n_mels, frames]; ``labels`` are the requested/true classes."""
    probs, feats = predict(judge.model, x_norm[:, 0])
    out = {"fid": fid(feats, judge.train_features), "is": inception_score(probs),
           "mis": modified_inception_score(probs), "am": am_score(probs, judge.train_marginal)}
    bins = ndb(judge.train_features, feats, centroids=judge.centroids)
    out.update({"ndb": bins["ndb"], "ndb_over_k": bins["ndb_over_k"]})
    if labels is not None:
        out["accuracy"] = accuracy(probs, labels)
    return out


def reanalyse(p: Prepared, x_norm: torch.Tensor, vocoder: Callable[[torch.Tensor], torch.Tensor],
              batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-space mels -> waveforms by ``vocoder`` (log-mels -> waves) -> normalised log-mels again (what a
    listener's clip really holds)."""
    lm = LogMel(p.normalizer.config)
    waves, again = [], []
    for i in range(0, len(x_norm), batch):
        w = vocoder(p.normalizer.denormalize(x_norm[i:i + batch, 0]))
        waves.append(w)
        again.append(p.normalizer.normalize(lm(w))[:, None])
    return torch.cat(waves), torch.cat(again)


def real_and_floor(p: Prepared, judge: Judge, floors: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> dict[str, float]:
    """Metrics of the real test clips (prefixed ``real_``) and of their re-synthesis by each vocoder of ``floors``
    (prefixed by its key, e.g. ``floor_`` for Griffin-Lim, ``vocoder_floor_`` for a learned one)."""
    out = {f"real_{k}": v for k, v in score(judge, p.test_x, p.test.labels).items()}
    for prefix, vocoder in floors.items():
        _, resynth = reanalyse(p, p.test_x, vocoder)
        out.update({f"{prefix}{k}": v for k, v in score(judge, resynth, p.test.labels).items()})
    return out
