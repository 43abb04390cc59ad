"""The rule for sampled conformers: none with broken geometry is written silently.

Every conformer the model produces is checked (``validation``: bond lengths and angles against the molecule's
MMFF-relaxed ETKDG reference, stereo, clashes). One that fails is relaxed briefly with MMFF94 (UFF where MMFF lacks
parameters), hydrogens first and then all atoms restrained to 0.5 A, at most ``relax_iters`` steps a stage
(``relax_iters`` 0: no repair), and checked again: if it passes it is kept and its SDF record says so
(``polydiff_relaxed`` 1, ``polydiff_relax_rmsd``, ``polydiff_force_field``); if it still fails it is dropped and
counted. A molecule left with no conformer gets as many ETKDGv3 conformers instead, with a warning on stderr naming
it, and its records say ``polydiff_source`` etkdg_fallback (and ``polydiff_valid`` for each). The counts go into
``samples.json``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdkit import Chem

RELAX_ITERS = 200


@dataclass
class ScreenedSet:
    """Molecules after screening: (name, molecule) with the kept conformers, SDF properties per conformer, the
    molecules left without any conformer (name -> why), and the counts for ``samples.json``."""

    molecules: list[tuple[str, Chem.Mol]]
    conf_props: dict[str, list[dict[str, str]]]
    failed: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def screen_molecules(molecules: list[tuple[str, Chem.Mol]], relax_iters: int = RELAX_ITERS,
                     seed: int = 0) -> ScreenedSet:
    """Apply the rule of this module to each molecule's conformers; fallback warnings go to stderr."""
    from .validation import screen

    kept, props, failed = [], {}, {}
    relaxed: dict[str, int] = {}
    dropped: dict[str, int] = {}
    fallbacks: list[str] = []
    for name, mol in molecules:
        result = screen(mol, repair_failed=relax_iters > 0, max_iters=relax_iters or RELAX_ITERS,
                        seed=seed)
        if result.n_relaxed:
            relaxed[name] = result.n_relaxed
        if result.n_dropped:
            dropped[name] = result.n_dropped
        if result.fallback:
            fallbacks.append(name)
            print(f"warning: {result.warning}", file=sys.stderr)
        if result.mol.GetNumConformers() == 0:
            failed[name] = "no conformer passed the geometry checks and ETKDGv3 could not embed the molecule"
            print(f"skipped {name}: {failed[name]}", file=sys.stderr)
            continue
        kept.append((name, result.mol))
        props[name] = result.conf_props()
    meta = {"validated": True, "relax_iters": relax_iters, "n_relaxed": sum(relaxed.values()),
            "n_dropped": sum(dropped.values()), "fallbacks": fallbacks, "relaxed": relaxed, "dropped": dropped}
    return ScreenedSet(kept, props, failed, meta)


def unscreened(molecules: list[tuple[str, Chem.Mol]]) -> ScreenedSet:
    """Molecules written as sampled (``--no-validate``): no checks, no SDF properties, ``validated`` false."""
    return ScreenedSet(list(molecules), {}, {}, {"validated": False})
