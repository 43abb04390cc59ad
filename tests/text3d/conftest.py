"""Fixtures shared by the text3d tests: the tiny settings every end-to-end test trains and distils with."""
import copy

import pytest

TINY = {"data": {"n_per_class": 1, "views_per_shape": 2, "size": 16, "voxel_resolution": 24, "n_samples": 24},
        "network": {"base": 8, "mults": [1, 2], "num_res": 1, "attn_levels": [1]},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "ckpt_every": 2, "progress": False},
        "sample": {"steps": 2},
        "distill": {"steps": 2, "batch": 1, "size": 16, "n_samples": 16, "resolution": 16},
        "evaluate": {"n_views": 2, "classifier_steps": 3, "mesh_resolution": 24}}


@pytest.fixture(scope="session")
def tiny() -> dict:
    """A fresh copy of the tiny text3d settings (a config override)."""
    return copy.deepcopy(TINY)
