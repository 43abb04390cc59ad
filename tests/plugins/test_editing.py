"""Editing (plugins/editing.py) on the toy domain: points of one of the 8 Gaussians turned into another.

The base is a tiny toy run on the 8 Gaussians (radius 2, std 0.1; 600 steps). Measured with heun at 20 steps on 64
points of mode 0 turned into mode 2: every edit lands in mode 2 with ``invert`` and with ``sdedit`` at strength 1, but
``invert`` keeps the point's offset from its mode to 0.02 (median) where SDEdit keeps nothing of it (0.16, the
cluster's own spread); at strength 0.5 only about two thirds of the edits reach mode 2.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from polydiff.core.mixtures import eight_gaussians
from polydiff.plugins.domain import Batch
from polydiff.plugins.editing import EditOptions, edit_command, edit_run, edit_sampler
from polydiff.plugins.errors import OptionError, RunExistsError, UsageError
from polydiff.plugins.options import build_options
from polydiff.plugins.personalize import read_array

MIXTURE = eight_gaussians()


@pytest.fixture(scope="module")
def reading(toy):
    """The toy domain with the instance reader it is proposed to declare."""
    domain = dataclasses.replace(toy)
    domain.read_instances = lambda path, config: read_array(path)
    return domain


@pytest.fixture(scope="module")
def mode0() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (MIXTURE.means[0] + 0.1 * torch.randn(64, 2, generator=g, dtype=torch.float64)).float()


def offset_error(edited: np.ndarray, x0: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """How far each edited point's offset from mode b is from the input's offset from mode a."""
    y = torch.as_tensor(edited).double()
    return ((y - MIXTURE.means[b]) - (x0.double() - MIXTURE.means[a])).norm(dim=1)


def in_mode(edited: np.ndarray, k: int) -> float:
    return float((MIXTURE.responsibilities(torch.as_tensor(edited).double()).argmax(1) == k).float().mean())


def test_invert_moves_the_class_and_keeps_the_position_better_than_sdedit(base, mode0):
    inverted = edit_run(base, Batch(mode0), "2", steps=20)
    sdedited = edit_run(base, Batch(mode0), "2", method="sdedit", steps=20)
    assert in_mode(inverted["points"], 2) > 0.95 and in_mode(sdedited["points"], 2) > 0.95
    kept, lost = offset_error(inverted["points"], mode0, 0, 2), offset_error(sdedited["points"], mode0, 0, 2)
    assert kept.median() < 0.05
    assert lost.median() > 3 * kept.median()
    facts = inverted.meta["edit"]
    assert facts["source"] == ["0"] * 64 and facts["source_from"] == "inferred" and facts["target"] == "2"
    assert sdedited.meta["edit"]["source_from"] == "unknown"
    assert inverted.settings.sampler == "heun"


def test_ddpm_noise_maps_move_the_class_and_keep_the_position(base, mode0):
    """Edit-friendly DDPM inversion through the domain's own ``generate``: the maps ride on the request with the
    start, the sampler is euler_ancestral, and into its own class it returns the input."""
    edited = edit_run(base, Batch(mode0), "2", method="ddpm", steps=20)
    sdedited = edit_run(base, Batch(mode0), "2", method="sdedit", sampler="euler_ancestral", steps=20)
    assert in_mode(edited["points"], 2) > 0.95 and edited.settings.sampler == "euler_ancestral"
    kept, lost = offset_error(edited["points"], mode0, 0, 2), offset_error(sdedited["points"], mode0, 0, 2)
    assert kept.median() < 0.05 and lost.median() > 3 * kept.median()
    same = edit_run(base, Batch(mode0), "0", source="0", method="ddpm", steps=20)
    assert torch.as_tensor(same["points"]).sub(mode0).norm(dim=1).median() < 0.01
    with pytest.raises(OptionError, match="--sampler"):
        edit_sampler(base, "ddpm", "heun")


def test_editing_into_its_own_class_returns_the_input(base, mode0):
    same = edit_run(base, Batch(mode0), "0", source="0", steps=20)
    assert torch.as_tensor(same["points"]).sub(mode0).norm(dim=1).median() < 0.01
    assert same.meta["edit"]["source_from"] == "given"


def test_labels_carried_by_the_reader_are_the_source(base, mode0):
    edited = edit_run(base, Batch(mode0, torch.zeros(64, dtype=torch.long)), "2", steps=8, refine=0)
    assert edited.meta["edit"]["source_from"] == "read"


def test_lower_strength_starts_lower(base, mode0):
    half = edit_run(base, Batch(mode0), "2", steps=20, strength=0.5)
    assert half.meta["edit"]["sigma_start"] < 0.1 * base.config["sample"]["sigma_max"]


def test_command_writes_the_domains_files_and_the_edit_record(reading, base, mode0, tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, mode0.numpy())
    options = build_options(EditOptions, {"run": base.path, "input": path, "to": "2", "out": tmp_path / "edited",
                                          "steps": 12})
    samples = edit_command(reading, options)
    record = json.loads((tmp_path / "edited" / "samples.json").read_text())
    assert set(record["files"]) == {"samples.npy", "samples.png"}
    assert record["edit"]["target"] == "2" and record["options"]["to"] == "2"
    assert record["out"] == str(tmp_path / "edited")
    assert np.array_equal(np.load(tmp_path / "edited" / "samples.npy"), samples["points"])
    assert record["inputs_written_to"] == "input"  # the inputs, written as samples are, for a before/after look
    assert np.allclose(np.load(tmp_path / "edited" / "input" / "samples.npy"), mode0.numpy(), atol=1e-6)
    assert (tmp_path / "edited" / "input" / "samples.png").stat().st_size > 1000
    with pytest.raises(RunExistsError):
        edit_command(reading, options)
    edit_command(reading, dataclasses.replace(options, overwrite=True, method="sdedit", strength=0.6))


def test_refusals(toy, reading, base, mode0, tmp_path):
    with pytest.raises(OptionError, match="--sampler"):
        edit_sampler(base, "invert", "euler_maruyama")
    assert edit_sampler(dataclasses.replace(base, config={**base.config, "sample": {
        **base.config["sample"], "sampler": "euler_maruyama"}}), "invert", None) == "heun"
    with pytest.raises(OptionError, match="--to"):
        edit_run(base, Batch(mode0), "nine")
    with pytest.raises(OptionError, match="--from"):
        edit_run(base, Batch(mode0), "2", source="nine")
    with pytest.raises(OptionError, match="--strength"):
        edit_run(base, Batch(mode0), "2", strength=0.0)
    options = build_options(EditOptions, {"run": base.path, "input": None, "to": "2"})
    with pytest.raises(OptionError, match="--input"):
        edit_command(reading, options)
    np.save(tmp_path / "p.npy", mode0.numpy())
    silent = dataclasses.replace(toy)
    silent.read_instances = None
    with pytest.raises(UsageError, match="instance reader"):
        edit_command(silent, dataclasses.replace(options, input=tmp_path / "p.npy"))
