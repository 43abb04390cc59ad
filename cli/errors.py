"""One clear line for every failure: exit 2 for usage errors, 1 for runtime failures; ``--debug`` shows the traceback."""
from __future__ import annotations

import os
import sys

from polydiff.plugins.errors import UsageError

DEBUG = {"on": bool(os.environ.get("POLYDIFF_DEBUG"))}


def fail(exc: BaseException) -> int:
    """Print one line for ``exc`` on stderr and return the exit code (2 for a ``UsageError``, else 1)."""
    code = 2 if isinstance(exc, UsageError) else 1
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, KeyError) and message.startswith(("'", '"')):
        message = message.strip("'\"")
    print(f"error: {message}", file=sys.stderr)
    if not DEBUG["on"]:
        print("(run with --debug for the full traceback)", file=sys.stderr)
    return code
