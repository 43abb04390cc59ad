"""polydiff.plugins: hook specifications, the plugin manager and the domain contract.

Built-in domains are plugins like any other: they are listed under the entry-point group ``polydiff`` of the
polydiff distribution itself, and third-party packages add theirs to the same group.
"""
from .hookspecs import hookimpl

__all__ = ["hookimpl"]
