"""Writing samples: the domain's files and ``samples.json`` into a guarded, locked folder (rules in ``folders.py``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .domain import Domain, Samples
from .folders import locked, next_numbered, prepare_sample_folder
from .manager import get_manager


RESERVED = frozenset({"domain", "run", "settings", "options", "command", "class", "files"})
"""Keys of ``samples.json`` that polydiff writes; a domain's ``Samples.meta`` goes beside them and may not reuse them."""


def sample_folder(domain: Domain, out: Path | None) -> Path:
    """``out``, or without one a new numbered folder ``samples/<domain>/NNN``."""
    return Path(out) if out is not None else next_numbered(Path("samples") / domain.name)


def write_samples(domain: Domain, samples: Samples, out: Path, *, record: dict[str, Any] | None = None,
                  overwrite: bool = False) -> list[Path]:
    """Save ``samples`` with the domain's writer into ``out`` and state in ``out/samples.json`` the settings, the
    options, the domain's ``meta``, ``record`` (run, class, ...) and the files; plugins observing
    ``polydiff_sample_end`` are told. Refuses a folder holding earlier files unless ``overwrite``."""
    out = Path(out)
    clash = sorted(set(samples.meta) & (RESERVED | set(record or {})))
    if clash:
        raise ValueError(f"the {domain.name} domain's Samples.meta uses reserved key(s) {', '.join(clash)}; rename them")
    with locked(out):
        prepare_sample_folder(out, overwrite=overwrite)
        files = [Path(f) for f in domain.save_samples(samples, out)]
        info = {"domain": domain.name, **(record or {}),
                "settings": samples.settings.as_dict() if samples.settings else None,
                **samples.meta, "files": [str(f.relative_to(out)) if f.is_relative_to(out) else str(f) for f in files]}
        tmp = out / f".samples.json.{os.getpid()}"
        tmp.write_text(json.dumps(info, indent=2, default=str))
        os.replace(tmp, out / "samples.json")
    get_manager().notify("polydiff_sample_end", domain=domain.name, out_dir=out, files=files)
    return files

