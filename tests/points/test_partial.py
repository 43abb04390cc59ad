"""The points domain's ``partial`` control: hidden point removal sees the front of two stacked planes and the
near cap of a sphere, scans are visible points drawn from the seeded viewpoint, files are read in the run's frame
and bad ones refused naming ``--control``, and a control run trains and samples through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polydiff.cli.app import build_app
from polydiff.domains.points.files import read_cloud, write_ply
from polydiff.domains.points.partial import CONTROL_POINTS, compute, partial_scan, read, visible
from polydiff.domains.points.plugin import make_domain
from polydiff.plugins.domain import Batch
from polydiff.plugins.errors import OptionError
from polydiff.plugins.manager import get_manager
from polydiff.plugins.runs import resolve_config, train

TINY = {"data": {"n_points": 48, "n_per_class": 5, "train_points": 32},
        "network": {"dim": 16, "depth": 1, "latents": 4, "heads": 2, "fourier": 4},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "ckpt_every": 2, "progress": False},
        "sample": {"steps": 2}}
UP = torch.tensor([[0.0, 0.0, 1.0]])


def _planes(n: int = 40) -> torch.Tensor:
    """Two identical square grids of n x n points, at z = +0.5 (front, facing +z) and z = -0.5."""
    g = torch.linspace(-1, 1, n)
    xy = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    front = torch.cat([xy, torch.full((len(xy), 1), 0.5)], 1)
    return torch.cat([front, front * torch.tensor([1.0, 1.0, -1.0])])[None]


def test_a_camera_above_two_planes_sees_the_front_plane_and_not_the_back_one() -> None:
    pts = _planes()
    mask = visible(pts, UP)[0]
    half = pts.shape[1] // 2
    assert mask[:half].float().mean() > 0.99  # the front plane
    assert mask[half:].float().mean() < 0.01  # hidden behind it
    below = visible(pts, -UP)[0]  # and from below, the other way round
    assert below[half:].float().mean() > 0.99 and below[:half].float().mean() < 0.01


def test_a_sphere_shows_its_near_cap() -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(1, 4000, 3, generator=g)
    pts = pts / pts.norm(dim=-1, keepdim=True)
    mask = visible(pts, UP)[0]
    z = pts[0, :, 2]
    assert mask[z > 0.5].float().mean() > 0.99  # the cap facing the camera is seen
    assert mask[z < 0.3].float().mean() < 0.02  # a camera at 2.5 radii sees nothing below z = 0.4
    sparse = visible(pts[:, :256], UP)[0]
    assert sparse[z[:256] > 0.5].all() and sparse[z[:256] < 0.3].float().mean() < 0.1


def test_scans_are_visible_points_from_a_seeded_viewpoint() -> None:
    pts = _planes(20).repeat(3, 1, 1)
    scan = partial_scan(pts, 64, torch.Generator().manual_seed(1), direction=UP.repeat(3, 1))
    assert scan.shape == (3, 64, 3)
    assert torch.all(scan[..., 2] == 0.5)
    a = compute(Batch(pts), torch.Generator().manual_seed(2))
    b = compute(Batch(pts), torch.Generator().manual_seed(2))
    assert a.shape == (3, CONTROL_POINTS, 3) and torch.equal(a, b)
    assert torch.all(a[..., 2].abs() == 0.5)  # every point is one of the cloud's
    views = {int(torch.sign(s[:, 2]).sum().sign()) for s in compute(Batch(pts.repeat(4, 1, 1)),
                                                                       torch.Generator().manual_seed(3))}
    assert views == {-1, 1}  # random viewpoints see either plane


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("points_partial") / "run"
    train(make_domain(), resolve_config(make_domain(), "quick", TINY), out, device="cpu")
    return out


def test_control_files_are_read_in_the_runs_frame_and_bad_ones_refused(run_dir: Path, tmp_path: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    norm = config["fitted"]["normalization"]
    raw = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    write_ply(tmp_path / "scan.ply", raw)
    got = read(tmp_path / "scan.ply", config)
    assert got.shape == (1, CONTROL_POINTS, 3)
    expected = (raw - np.array(norm["mean"])) / norm["std"]
    dist = torch.cdist(got[0], torch.as_tensor(expected, dtype=torch.float32),
                       compute_mode="donot_use_mm_for_euclid_dist").amin(1)
    assert dist.max() < 1e-4  # each control point is a normalised point of the file
    np.save(tmp_path / "scans.npy", np.stack([raw, raw[::-1]]))
    assert read(tmp_path / "scans.npy", config).shape == (2, CONTROL_POINTS, 3)
    (tmp_path / "bad.ply").write_text("not a ply")
    with pytest.raises(OptionError, match="--control"):
        read(tmp_path / "bad.ply", config)
    np.save(tmp_path / "flat.npy", raw[:, :2])
    with pytest.raises(OptionError, match="--control"):
        read(tmp_path / "flat.npy", config)


def test_train_control_partial_then_sample_with_a_scan_file(run_dir: Path, tmp_path: Path) -> None:
    assert "partial" in get_manager().domain("points").controls
    app, runner = build_app(), CliRunner()
    res = runner.invoke(app, ["points", "train-control", "--run", str(run_dir), "--control", "partial", "--out",
                              str(tmp_path / "ctl"), "--steps", "2", "--dropout", "0.1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    spec = json.loads((tmp_path / "ctl" / "config.json").read_text())["control"]
    assert spec["kind"] == "partial" and spec["control_shape"] == [CONTROL_POINTS, 3] and spec["encoder"] == "set"
    write_ply(tmp_path / "scan.ply", np.random.default_rng(1).normal(size=(30, 3)).astype(np.float32))
    res = runner.invoke(app, ["points", "sample", "--run", str(tmp_path / "ctl"), "--control",
                              str(tmp_path / "scan.ply"), "-n", "2", "--out", str(tmp_path / "s"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert read_cloud(sorted((tmp_path / "s").glob("*.ply"))[0]).shape == (48, 3)
    assert (tmp_path / "s" / "preview.png").is_file()
    assert json.loads((tmp_path / "s" / "clouds.json").read_text())["control"]["kind"] == "partial"
