"""Output folders that never lose work: run folders, exports and sample folders, guarded and locked.

Rules (the README states them too):
- ``train --out DIR`` refuses a folder that holds a run (``config.json`` or ``checkpoint/``) unless ``--resume``
  (continue it) or ``--overwrite`` (replace the run's own files; other files stay).
- ``export RUN --out DIR`` writes a new folder; it refuses one that holds anything, except with ``--overwrite`` an
  earlier export (never a training run). The export is written beside the target and renamed into place.
- ``sample --out DIR`` refuses a folder that holds anything unless ``--overwrite``, which removes the files the
  earlier ``samples.json`` lists (and nothing else). Without ``--out``, each invocation writes a new numbered folder
  ``samples/<domain>/NNN``.
- A folder being written holds ``.polydiff.lock`` (the writer's pid): a second process on the same folder is refused
  instead of interleaving its files; a lock left by a process that no longer exists is taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import RunExistsError

LOCK = ".polydiff.lock"
RUN_FILES = ("config.json", "checkpoint", "metrics.jsonl", "loss.png", "command.txt")


_HELD: set[Path] = set()


class FolderBusyError(RuntimeError):
    """Another polydiff process is writing into the folder (a runtime conflict: exit 1)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[Path]:
    """Hold ``folder/.polydiff.lock`` while writing into ``folder`` (created if needed, and removed again if the work
    fails before anything was written, so a refused command leaves no empty folder); re-entrant in a process."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:
        yield folder
        return
    lock = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid) and pid != os.getpid():
                raise FolderBusyError(f"{folder} is being written by another polydiff process (pid {pid}); "
                                      "wait for it or choose another --out") from None
            lock.unlink(missing_ok=True)
    else:
        raise FolderBusyError(f"cannot lock {folder}; remove {lock} if no polydiff process is using it")
    _HELD.add(key)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield folder
    finally:
        _HELD.discard(key)
        lock.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()


def _contents(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != LOCK] if folder.is_dir() else []


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run (trained or exported)."""
    return (folder / "config.json").is_file() or (folder / "checkpoint").is_dir()


def prepare_train_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check (and with ``overwrite`` clear the run files of) a ``train --out`` folder; call it holding the lock."""
    if not holds_run(out) or resume:
        return
    if not overwrite:
        raise RunExistsError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                             "or choose another --out")
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _is_export(folder: Path) -> bool:
    state = folder / "checkpoint" / "state.json"
    try:
        return "exported_from" in json.loads(state.read_text())
    except (OSError, ValueError):
        return False


def check_export_target(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``export --out`` that holds anything but (with ``overwrite``) an earlier export."""
    if not _contents(out):
        return
    if holds_run(out) and not _is_export(out):
        raise RunExistsError(f"{out} holds a training run; export into a new folder")
    if not overwrite:
        raise RunExistsError(f"{out} is not empty; pass --overwrite to replace an earlier export, or choose a new --out")
    if not _is_export(out):
        raise RunExistsError(f"{out} holds files that are not an export; choose a new --out")


def replace_folder(staged: Path, out: Path) -> None:
    """Move the finished ``staged`` folder to ``out`` (replacing an earlier export there)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staged, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, out)


def next_numbered(root: Path) -> Path:
    """A new folder ``root/NNN`` (the next free number), created atomically so two processes never share it."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    k = max(taken, default=0) + 1
    while True:
        folder = root / f"{k:03d}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            k += 1


def prepare_sample_folder(out: Path, *, overwrite: bool) -> None:
    """Check a ``sample --out`` folder (call it holding the lock): empty, or with ``overwrite`` clear the files that
    the earlier ``samples.json`` lists."""
    existing = _contents(out)
    if not existing:
        return
    if not overwrite:
        raise RunExistsError(f"{out} already holds files; pass --overwrite to replace the samples written there, "
                             "or choose another --out (without --out each run gets a new numbered folder)")
    record = out / "samples.json"
    if holds_run(out):
        raise RunExistsError(f"{out} holds a run; write samples into another folder")
    listed = json.loads(record.read_text()).get("files", []) if record.is_file() else []
    for name in [*listed, "samples.json"]:
        path = out / name
        if path.is_file() and path.resolve().is_relative_to(out.resolve()):
            path.unlink()
