"""The points plugin end to end with tiny settings: registered, train -> sample (PLY + JSON) -> evaluate -> complete."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from polydiff.cli.app import build_app
from polydiff.domains.points.files import read_cloud, write_ply
from polydiff.domains.common.datasets import collate_labelled as collate
from polydiff.domains.points.plugin import make_domain
from polydiff.domains.points.prepared import prepare
from polydiff.plugins.manager import get_manager
from polydiff.plugins.errors import ConfigError
from polydiff.plugins.runs import resolve_config, train

TINY = {"data": {"n_points": 48, "n_per_class": 5},
        "network": {"dim": 16, "depth": 1, "latents": 4, "heads": 2, "fourier": 4},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "ckpt_every": 2, "progress": False},
        "sample": {"steps": 2}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("points_run")
    cfg = resolve_config(make_domain(), "quick", TINY)
    train(make_domain(), cfg, out / "run", device="cpu")
    return out / "run"


def test_points_is_registered_with_both_presets() -> None:
    domain = get_manager().domain("points")
    assert {"quick", "full"} <= set(domain.presets)
    assert domain.presets["quick"]["data"]["n_points"] <= 512


def test_dataset_collate_and_normalisation_stated() -> None:
    cfg = resolve_config(make_domain(), "quick", TINY)
    ds = make_domain().build_dataset(cfg["data"], "train")
    batch = collate([ds[0], ds[1]])
    assert batch.x0.shape == (2, 48, 3) and batch.cond["label"].shape == (2,)
    p = prepare(cfg["data"])
    assert np.allclose(p.train_points.reshape(-1, 3).mean(0), 0, atol=1e-5)
    assert not set(p.train.names) & set(p.test.names)
    with pytest.raises(ConfigError, match="unknown key 'npoints' in \\[data\\]"):
        resolve_config(make_domain(), "quick", {"data": {"npoints": 3}})


def test_cli_sample_evaluate_and_complete(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    app = build_app()
    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--out", str(tmp_path / "s"), "-n", "3",
                              "--class", "mug", "--guidance-scale", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    plys = sorted((tmp_path / "s").glob("*.ply"))
    assert len(plys) == 3 and read_cloud(plys[0]).shape == (48, 3)
    meta = json.loads((tmp_path / "s" / "clouds.json").read_text())
    assert meta["normalization"]["mode"] == "global" and meta["labels"] == ["mug"] * 3
    assert "normalization" in json.loads((tmp_path / "s" / "samples.json").read_text())
    assert (tmp_path / "s" / "preview.png").stat().st_size > 1000

    res = runner.invoke(app, ["points", "evaluate", "--run", str(run_dir), "-n", "4", "--emd-points", "16",
                              "--oracle", "--out", str(tmp_path / "m.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert 0 <= metrics["1nna_cd"] <= 1 and 0 <= metrics["oracle_cov_emd"] <= 1 and metrics["n_reference"] == 4

    partial = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    write_ply(tmp_path / "partial.ply", partial)
    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--out", str(tmp_path / "c"), "-n", "1",
                              "--complete", str(tmp_path / "partial.ply"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    done = read_cloud(tmp_path / "c" / "cloud_0000.ply")
    assert done.shape == (48, 3) and np.allclose(done[:10], partial, atol=1e-4)
    assert json.loads((tmp_path / "c" / "samples.json").read_text())["options"]["complete"].endswith("partial.ply")

    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--class", "sofa", "--device", "cpu"])
    assert res.exit_code == 2 and "unknown class 'sofa'" in res.output


def test_cli_points_per_cloud_and_upsampling(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    app = build_app()
    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--out", str(tmp_path / "s"), "-n", "2",
                              "--points", "100", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert read_cloud(tmp_path / "s" / "cloud_0001.ply").shape == (100, 3)
    assert json.loads((tmp_path / "s" / "clouds.json").read_text())["n_points"] == 100

    sparse = np.random.default_rng(1).normal(size=(25, 3)).astype(np.float32)
    write_ply(tmp_path / "sparse.ply", sparse)
    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--out", str(tmp_path / "u"), "-n", "1",
                              "--upsample", str(tmp_path / "sparse.ply"), "--points", "200", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    dense = read_cloud(tmp_path / "u" / "cloud_0000.ply")
    assert dense.shape == (200, 3) and np.allclose(dense[:25], sparse, atol=1e-4)

    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--upsample", str(tmp_path / "sparse.ply"),
                              "--points", "20", "--device", "cpu"])
    assert res.exit_code == 2 and "ask for more with --points" in " ".join(res.output.replace("│", " ").split())
    res = runner.invoke(app, ["points", "sample", "--run", str(run_dir), "--upsample", str(tmp_path / "sparse.ply"),
                              "--complete", str(tmp_path / "sparse.ply"), "--device", "cpu"])
    assert res.exit_code == 2 and "give one of --complete and --upsample" in res.output


def test_evaluate_against_a_reference_folder_skips_broken_files(run_dir: Path, tmp_path: Path) -> None:
    import trimesh

    ref = tmp_path / "ref"
    ref.mkdir()
    for i, size in enumerate((0.5, 1.0, 1.5)):
        trimesh.creation.box(extents=(size, 1.0, 0.5)).export(ref / f"box{i}.obj")
    (ref / "broken.ply").write_bytes(b"ply\nformat nonsense\n")
    res = CliRunner().invoke(build_app(), ["points", "evaluate", "--run", str(run_dir), "--reference",
                                                           str(ref), "--emd-points", "16", "--out", str(tmp_path / "m.json"),
                                                           "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "loaded 3 meshes, skipped 1: broken.ply" in res.output
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["n_reference"] == 3 and not any(k.startswith("oracle_") for k in metrics)


def test_train_points_draws_fresh_subsets_and_the_run_stores_what_sampling_needs(run_dir: Path) -> None:
    import torch

    cfg = resolve_config(make_domain(), "quick", {**TINY, "data": {**TINY["data"], "train_points": 16}})
    ds = make_domain().build_dataset(cfg["data"], "train")
    torch.manual_seed(0)
    a, b = ds[0][0], ds[0][0]
    full = {tuple(row) for row in prepare(cfg["data"]).train_points[0].tolist()}
    assert a.shape == (16, 3) and not torch.equal(a, b)
    assert {tuple(row) for row in a.tolist()} <= full
    fitted = json.loads((run_dir / "config.json").read_text())["fitted"]
    assert fitted["classes"] == list(prepare(cfg["data"]).train.classes) and fitted["normalization"]["mode"] == "global"


def test_a_run_trained_on_subsets_samples_larger_clouds_in_anchored_sets(run_dir: Path) -> None:
    from polydiff.plugins.runs import load_run

    run = load_run(make_domain(), run_dir, "cpu")
    run.config["data"]["train_points"] = 16
    calls = []
    net = run.denoiser
    run.denoiser = lambda x, sigma, cond=None: calls.append(x.shape[1]) or net(x, sigma, cond)
    out = run.sample(2, steps=2, sampler="euler", seed=0, points=40)
    assert out["points"].shape == (2, 40, 3) and out.meta["anchored_set_size"] == 16 and set(calls) == {16}
    calls.clear()
    out = run.sample(2, steps=2, sampler="euler", seed=0, points=40, label="mug", guidance_scale=2.0)
    assert out["points"].shape == (2, 40, 3) and set(calls) == {16} and len(calls) == 2  # guidance wraps the anchored
    rows = []  # sets in one batched call per step: its null cond is per cloud
    run.denoiser = lambda x, sigma, cond=None: rows.append(x.shape[0]) or net(x, sigma, cond)
    out = run.sample(2, steps=1, sampler="euler", points=40)  # default context 12: 24 new points in 6 chunks
    assert out.meta["anchor_context"] == 12 and rows == [2 * (1 + 6)]
    rows.clear()
    run.config["sample"]["anchor_context"] = 8  # less context, 8 new points per chunk: 3 chunks
    out = run.sample(2, steps=1, sampler="euler", points=40)
    assert out.meta["anchor_context"] == 8 and rows == [2 * (1 + 3)]
    run.config["sample"]["anchor_context"] = 16
    with pytest.raises(ValueError, match="anchor context"):
        run.sample(1, steps=1, sampler="euler", points=40)
    run.config["sample"]["anchored"] = False  # a run can turn it off for good
    calls.clear()
    run.denoiser = lambda x, sigma, cond=None: calls.append(x.shape[1]) or net(x, sigma, cond)
    assert run.sample(1, steps=1, sampler="euler", points=40).meta["anchored_set_size"] is None and set(calls) == {40}



def test_edit_reads_a_sample_folder_skipping_other_files_and_naming_broken_ones(run_dir: Path, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    """A folder of clouds as ``sample`` writes it (with its JSON and preview) is valid input; a broken file is named."""
    from polydiff.domains.points.files import write_clouds
    from polydiff.domains.points.sampling import read_instances
    from polydiff.plugins.errors import UsageError

    config = json.loads((run_dir / "config.json").read_text())
    folder = tmp_path / "samples"
    write_clouds(folder, np.random.default_rng(0).normal(size=(2, 48, 3)).astype(np.float32))
    (folder / "clouds.json").write_text("{}")
    (folder / "preview.png").write_bytes(b"\x89PNG")
    (folder / "broken.ply").write_bytes(b"ply\nformat nonsense\n")
    batch = read_instances(folder, config)
    assert batch.x0.shape == (2, 48, 3)
    err = capsys.readouterr().err
    assert "skipped: cannot read" in err and "broken.ply" in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no point-cloud or mesh files"):
        read_instances(tmp_path / "empty", config)
    with pytest.raises(UsageError, match="broken.ply"):
        read_instances(folder / "broken.ply", config)


def test_personalize_fine_tunes_and_draws_its_prior_at_the_training_set_size(run_dir: Path, tmp_path: Path) -> None:
    """A run trained on 16-point subsets is fine-tuned on 16 of each 48-point instance per step (a fresh draw each
    time), and its prior samples are 16-point sets (the size it samples in), not whole clouds."""
    import torch

    from polydiff.domains.common.datasets import subset_rows
    from polydiff.plugins.domain import Batch
    from polydiff.plugins.personalize import personalize_run
    from polydiff.plugins.runs import load_run

    x = torch.randn(3, 48, 3)
    g = torch.Generator().manual_seed(0)
    a, b = subset_rows(Batch(x, {"label": torch.zeros(3)}), 16, g), subset_rows(Batch(x), 16, g)
    assert a.x0.shape == (3, 16, 3) and a.cond is not None and not torch.equal(a.x0, b.x0)
    for i in range(3):  # each row's points are distinct points of its own cloud
        full = {tuple(r) for r in x[i].tolist()}
        assert {tuple(r) for r in a.x0[i].tolist()} <= full and len({tuple(r) for r in a.x0[i].tolist()}) == 16
    assert subset_rows(Batch(x), 48, g).x0 is x

    run = load_run(make_domain(), run_dir, "cpu")
    run.config["data"]["train_points"] = 16
    seen = []  # the hook goes with the copy that is fine-tuned: it sees prior sampling and training
    run.denoiser.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    instances = Batch(torch.randn(3, 48, 3))
    personalize_run(run, instances, "blob", tmp_path / "blob", steps=2, prior_samples=4, device="cpu")
    assert len(seen) > 2 and set(seen) == {16}
    cfg = json.loads((tmp_path / "blob" / "config.json").read_text())
    assert cfg["personalized"]["classes"] == ["blob"] and cfg["data"]["train_points"] == 16
