"""Shared test settings: deterministic, single-threaded torch so results are exact and CI-stable."""
import os

import pytest
import torch

os.environ.setdefault("POLYDIFF_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache-tests"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
