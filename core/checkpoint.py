"""Checkpoints as safetensors plus JSON, written atomically: nothing a user hands in is ever unpickled.

A checkpoint is a folder: ``model.safetensors`` (weights and EMA weights), ``trainer.safetensors`` (optimizer moments
and RNG states) and ``state.json`` (step, optimizer hyper-parameters, anything JSON). It is written to a temporary
folder and renamed into place, so a crash leaves either the old or the new checkpoint, never half of one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

Tensor = torch.Tensor


def _plain(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def save_checkpoint(folder: Path, tensors: dict[str, dict[str, Tensor]], state: dict[str, Any]) -> None:
    """Write ``{name}.safetensors`` for each tensor dict and ``state.json``, replacing ``folder`` atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, group in tensors.items():
        save_file(_plain(group), str(tmp / f"{name}.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True, default=str))
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint at ``folder``, or the previous one if a crash interrupted the swap."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_checkpoint(folder: Path, names: tuple[str, ...] = ("model",)) -> tuple[dict[str, dict[str, Tensor]], dict]:
    """Read the tensor groups ``names`` and the JSON state of a checkpoint folder."""
    found = find_checkpoint(folder)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {folder} (expected state.json and model.safetensors)")
    tensors = {}
    for name in names:
        path = found / f"{name}.safetensors"
        if path.is_file():
            tensors[name] = load_file(str(path))
    return tensors, json.loads((found / "state.json").read_text())
