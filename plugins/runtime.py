"""Where and how a command computes: the device and the number of CPU threads, chosen once before torch works."""
from __future__ import annotations

import os

from .errors import OptionError

THREADS_ENV = "POLYDIFF_THREADS"
DEFAULT_THREADS = 1
"""One thread unless asked: on a shared 2-core machine two threads made ``audio sample -n 8 --steps 10`` 2-6x slower
(``benchmarks/threads.py``: 5.1 s vs 28.8 s with one other training job on the machine, 8.8 s vs 42.3 s with several,
18.1 s vs 79.3 s with two more spinning neighbours), and the test suite 2.7x slower."""


def threads(requested: int | None = None) -> int:
    """The thread count: ``requested``, else ``$POLYDIFF_THREADS``, else ``DEFAULT_THREADS``."""
    if requested is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if not env:
            return DEFAULT_THREADS
        try:
            requested = int(env)
        except ValueError:
            raise OptionError(THREADS_ENV, f"must be a whole number, got {env!r}") from None
    if requested < 1:
        raise OptionError("--threads", f"must be at least 1, got {requested}")
    return requested


def set_threads(requested: int | None = None) -> int:
    """Apply the thread count to torch (intra-op) before any work; returns it."""
    import torch

    n = threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(device: str):
    """``auto`` picks CUDA when available (``cuda:LOCAL_RANK`` under torchrun); asking for CUDA without it is a clear
    error."""
    import torch

    from polydiff.core.training import distributed_device

    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise OptionError("--device", f"unknown device {device!r}; use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return distributed_device(device)
