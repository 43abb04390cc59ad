"""The errors a domain or the framework raises for bad input, so every front end (CLI, scripts) reports them alike.

A ``UsageError`` is the user's to fix (the CLI exits 2); any other exception is a runtime failure (exit 1). Domains
raise these instead of importing anything from the CLI.
"""
from __future__ import annotations


class UsageError(ValueError):
    """A bad option value, an unknown name, an invalid config or an unreadable input file (exit code 2)."""


class OptionError(UsageError):
    """A bad value for one option: the message names the option (``--mask``) and says what to give instead."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


class ConfigError(UsageError):
    """An invalid run configuration: the message names the section and key."""


class RunExistsError(UsageError):
    """A command would overwrite a run or earlier outputs; the message says which flag allows it."""
