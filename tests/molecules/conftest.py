"""Shared fixtures: a small real QM9 subset (first 300 CSV rows) parsed into a temporary cache."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def qm9_cache(tmp_path_factory):
    """A POLYDIFF_CACHE folder holding the parsed first 300 QM9 rows."""
    from polydiff.domains.molecules.qm9 import load_qm9

    root = tmp_path_factory.mktemp("polydiff_cache")
    load_qm9(max_rows=300, directory=root / "molecules")
    return root


@pytest.fixture(scope="session")
def qm9_small(qm9_cache):
    from polydiff.domains.molecules.qm9 import load_qm9

    return load_qm9(max_rows=300, directory=qm9_cache / "molecules")
