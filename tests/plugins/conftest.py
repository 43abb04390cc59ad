"""Fixtures shared by the capability tests: the toy domain and one small trained toy run (8 Gaussians)."""
import pytest

from polydiff.plugins.manager import get_manager
from polydiff.plugins.runs import resolve_config, train


@pytest.fixture(scope="session")
def toy():
    return get_manager().domain("toy")


@pytest.fixture(scope="session")
def base(toy, tmp_path_factory):
    """A toy run on the 8 Gaussians, 600 steps (seconds): the base that personalization and editing start from."""
    cfg = resolve_config(toy, "quick", {
        "data": {"dataset": "8gaussians", "n_train": 4000, "n_test": 2000},
        "network": {"width": 64, "depth": 2},
        "train": {"steps": 600, "batch_size": 256, "progress": False, "log_every": 100, "ckpt_every": 10000},
        "sample": {"steps": 12}})
    return train(toy, cfg, tmp_path_factory.mktemp("toy") / "base")
