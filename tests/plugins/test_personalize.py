"""Personalization (plugins/personalize.py) on the toy domain: a new cluster from 20 points as a new class.

The base is a tiny toy run on the 8 Gaussians (radius 2, std 0.1; 600 steps, seconds); the new class is a cluster of
std 0.1 at the empty centre. Measured (300 fine-tune steps, 500 prior samples): new-class samples lie 0.16 from the
centre on average (the instances' own spread gives 0.125); the energy distance of the old classes' samples to held-out
points is 0.0005 for the base, 0.0013 after personalizing with prior_weight 1 and 0.56 with prior_weight 0 (without
prior preservation the old classes collapse onto the new cluster).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from polydiff.core.mixtures import energy_distance
from polydiff.domains.common.embeddings import LabelEmbedding
from polydiff.domains.toy import data
from polydiff.plugins.domain import Batch
from polydiff.plugins.errors import OptionError, RunExistsError, UsageError
from polydiff.plugins.options import build_options
from polydiff.plugins.personalize import (PersonalizeOptions, class_count, grow_classes, grow_to, load_any,
                                          load_personalized, personalize_command, personalize_run, prepare_network,
                                          read_array, with_labels)
from polydiff.plugins.runs import load_run

CENTRE = torch.tensor([0.0, 0.0])
NEW_CLASS_DISTANCE = 0.25  # mean distance of new-class samples to the centre (measured 0.16; instances 0.125)
OLD_CLASSES_ED = 0.005  # old classes' energy distance with prior preservation (measured 0.0013; base 0.0005)
FORGOTTEN_ED = 0.1  # ... and without it (measured 0.56)


@pytest.fixture(scope="module")
def instances() -> torch.Tensor:
    return CENTRE + 0.1 * torch.randn(20, 2, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    return data.make("8gaussians", "test", 1000)


def old_classes_ed(run, held_out: torch.Tensor) -> float:
    """Energy distance of samples of the held-out points' classes to those points."""
    points = run.sample(len(held_out), labels=held_out[:, 2].long(), seed=1)["points"]
    return float(energy_distance(torch.as_tensor(points), held_out[:, :2]))


def new_class_distance(run) -> float:
    points = torch.as_tensor(run.sample(500, label="new", seed=2)["points"])
    return float((points - CENTRE).norm(dim=1).mean())


@pytest.fixture(scope="module")
def personalized(base, instances, tmp_path_factory):
    out = tmp_path_factory.mktemp("personalized")
    return {w: personalize_run(base, Batch(instances), "new", out / f"prior{w}", prior_weight=w, prior_samples=500,
                               steps=300) for w in (0.0, 1.0)}


def test_new_class_lands_on_the_instances_and_prior_preservation_keeps_the_old_classes(base, personalized, held_out):
    with_prior, without = personalized[1.0], personalized[0.0]
    assert new_class_distance(with_prior) < NEW_CLASS_DISTANCE
    assert new_class_distance(without) < NEW_CLASS_DISTANCE
    assert old_classes_ed(base, held_out) < OLD_CLASSES_ED
    assert old_classes_ed(with_prior, held_out) < OLD_CLASSES_ED
    assert old_classes_ed(without, held_out) > FORGOTTEN_ED


def test_the_result_is_an_ordinary_run_folder_that_loads_and_samples_by_name(toy, base, personalized):
    run = personalized[1.0]
    facts = json.loads((run.path / "config.json").read_text())["personalized"]
    assert facts["classes"] == ["new"] and facts["instances"] == 20 and facts["prior_weight"] == 1.0
    assert facts["base_run"] == str(base.path.resolve()) and facts["base_classes"] == 8 and facts["lora_rank"] is None
    for name in ("config.json", "checkpoint", "metrics.jsonl", "loss.png"):
        assert (run.path / name).exists(), name
    assert run.class_names() == [*base.class_names(), "new"]
    loaded = load_any(toy, run.path)
    assert loaded.class_names()[-1] == "new"
    assert load_run(toy, run.path).class_names()[-1] == "new"  # the path of `sample --run` and polydiff.load
    a, b = (torch.as_tensor(r.sample(64, label="new", seed=3)["points"]) for r in (run, loaded))
    assert (a - b).abs().max() < 1e-5
    assert (torch.as_tensor(loaded.sample(64, label=3, seed=3)["points"]) - torch.as_tensor(
        run.sample(64, label=3, seed=3)["points"])).abs().max() < 1e-5


def test_lora_writes_a_small_adapter_that_loads_on_top_of_the_base(toy, base, instances, held_out, tmp_path):
    before = {k: v.clone() for k, v in base.denoiser.state_dict().items()}
    run = personalize_run(base, Batch(instances), "new", tmp_path / "lora", lora_rank=4, prior_samples=500,
                          steps=300)
    adapter = (run.path / "checkpoint" / "model.safetensors").stat().st_size
    whole = (base.path / "checkpoint" / "model.safetensors").stat().st_size
    assert adapter < 40_000 and adapter < whole / 5  # 13 KB against the base's 180 KB (weights and EMA)
    assert all(torch.equal(v, base.denoiser.state_dict()[k]) for k, v in before.items())  # base untouched
    assert new_class_distance(run) < NEW_CLASS_DISTANCE
    assert old_classes_ed(run, held_out) < OLD_CLASSES_ED
    loaded = load_personalized(toy, run.path)
    a, b = (torch.as_tensor(r.sample(64, label="new", seed=4)["points"]) for r in (run, loaded))
    assert (a - b).abs().max() < 1e-4
    facts = loaded.config["personalized"]
    assert facts["lora_rank"] == 4 and facts["lora_alpha"] == 4.0


def test_a_second_class_on_top_of_a_personalized_run(toy, personalized, tmp_path):
    other = torch.tensor([3.5, 0.0]) + 0.1 * torch.randn(10, 2, generator=torch.Generator().manual_seed(6))
    run = personalize_run(personalized[1.0], Batch(other), "far", tmp_path / "two", lora_rank=4, steps=300,
                          prior_samples=500)
    assert run.class_names()[-2:] == ["new", "far"]
    loaded = load_any(toy, run.path)
    assert loaded.class_names() == run.class_names()
    far, new = (torch.as_tensor(loaded.sample(200, label=c, seed=0)["points"]) for c in ("far", "new"))
    # measured: far 0.22 from its centre; "new" 0.37 (0.16 before: a second fine-tune costs the first some focus)
    assert float((far - other.mean(0)).norm(dim=1).mean()) < 2 * NEW_CLASS_DISTANCE
    assert float((new - CENTRE).norm(dim=1).mean()) < 2 * NEW_CLASS_DISTANCE


def test_refusals(base, personalized, instances, tmp_path):
    with pytest.raises(OptionError, match="--name"):
        personalize_run(base, Batch(instances), "3", tmp_path / "x", steps=1)
    with pytest.raises(OptionError, match="--related"):
        personalize_run(base, Batch(instances), "y", tmp_path / "y", steps=1, related="nine")
    with pytest.raises(RunExistsError):
        personalize_run(base, Batch(instances), "z", personalized[1.0].path, steps=1, prior_weight=0.0)
    with pytest.raises(UsageError, match="LabelEmbedding"):
        grow_classes(nn.Linear(2, 2))


def test_command_reads_instances_with_the_domains_reader(toy, base, instances, tmp_path):
    path = tmp_path / "cluster.npy"
    np.save(path, instances.numpy())
    options = build_options(PersonalizeOptions, {"run": base.path, "instances": path, "name": "new",
                                                 "out": tmp_path / "cmd", "steps": 20, "prior_samples": 64,
                                                 "related": "2"})
    silent = dataclasses.replace(toy)
    silent.read_instances = None
    with pytest.raises(UsageError, match="instance reader"):
        personalize_command(silent, options, command="polydiff toy personalize ...")
    reading = dataclasses.replace(toy)
    reading.read_instances = lambda p, config: read_array(p)  # the toy's proposed reader
    run = personalize_command(reading, options, command="polydiff toy personalize ...", progress=False)
    assert (run.path / "command.txt").read_text().startswith("polydiff toy personalize")
    assert run.config["personalized"]["related"] == "2"
    with pytest.raises(OptionError, match="--name"):
        personalize_command(reading, dataclasses.replace(options, name=None))


def _networks() -> dict[str, nn.Module]:
    from polydiff.domains.audio.network import MelUNet, NetConfig
    from polydiff.domains.points.network import PointSetTransformer
    from polydiff.domains.toy.network import ToyMLP

    return {"toy": ToyMLP(width=16, depth=1, num_classes=3),
            "points": PointSetTransformer(dim=16, depth=1, latents=4, heads=2, num_classes=3),
            "audio": MelUNet(NetConfig(base=8, mults=(1, 2), attn_levels=(), num_classes=3, n_mels=8, layout="1d"))}


def _inputs(kind: str) -> tuple[torch.Tensor, torch.Tensor, callable]:
    g = torch.Generator().manual_seed(0)
    if kind == "toy":
        return torch.randn(4, 2, generator=g), torch.rand(4, generator=g), lambda labels: labels
    if kind == "points":
        return torch.randn(4, 16, 3, generator=g), torch.rand(4, generator=g), lambda labels: {"label": labels}
    return torch.randn(4, 1, 8, 16, generator=g), torch.rand(4, generator=g), lambda labels: {"label": labels}


@pytest.mark.parametrize("kind", ["toy", "points", "audio"])
def test_growing_a_network_keeps_its_classes_and_null_and_adds_one(kind):
    net = _networks()[kind].eval()
    x, c, cond = _inputs(kind)
    null = torch.full((4,), -1)
    with torch.no_grad():
        before = [net(x, c, cond(torch.full((4,), k))) for k in range(3)] + [net(x, c, cond(null)), net(x, c, None)]
    assert grow_classes(net, init_from=1) == 3
    table = next(m for m in net.modules() if isinstance(m, LabelEmbedding))
    assert table.num_classes == 4 and table.table.num_embeddings == 5
    with torch.no_grad():
        after = [net(x, c, cond(torch.full((4,), k))) for k in range(3)] + [net(x, c, cond(null)), net(x, c, None)]
        new = net(x, c, cond(torch.full((4,), 3)))
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    assert torch.equal(new, before[1])  # the new row starts as class 1's


def test_prepare_network_grows_to_the_recorded_count_once():
    from polydiff.domains.toy.network import ToyMLP

    net = ToyMLP(width=8, depth=1, num_classes=2)
    config = {"personalized": {"base_classes": 2, "classes": ["a", "b"]}}
    prepare_network(net, config)
    prepare_network(net, config)
    assert class_count(net) == 4 and net.label_emb.table.num_embeddings == 5 and net.num_classes == 4
    assert prepare_network(net, {}) is net


class OwnTable(nn.Module):
    """A network with its own label table, growing through the add_class protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.table = 2, nn.Embedding(3, 4)

    def add_class(self, init_from: int | None = None) -> int:
        self.num_classes += 1
        self.table = nn.Embedding(self.num_classes + 1, 4)
        return self.num_classes - 1


def test_a_network_may_grow_itself():
    net = nn.Sequential(OwnTable())
    assert grow_classes(net) == 2 and class_count(net) == 3
    grow_to(net, 5)
    assert net[0].num_classes == 5


def test_with_labels_follows_the_label_convention():
    labels = torch.tensor([1, 2])
    assert torch.equal(with_labels(None, labels), labels)
    assert torch.equal(with_labels({"label": torch.zeros(2), "mask": 1}, labels)["label"], labels)
    with pytest.raises(UsageError, match="label"):
        with_labels("a prompt", labels)
    declaring = type("D", (), {"label_cond": staticmethod(lambda lab: {"label": lab})})()
    assert torch.equal(with_labels(None, labels, declaring)["label"], labels)


def test_per_class_binds_the_name_to_each_class_the_instances_carry(toy, base, tmp_path):
    """Instances of classes 0 and 2 at two new places: NAME:0 and NAME:2 each land on their own instances (the
    adapter of both rows loads on the base); a class the instances lack gets no NAME binding."""
    g = torch.Generator().manual_seed(7)
    spots = {0: CENTRE, 2: torch.tensor([0.0, -3.5])}
    x0 = torch.cat([spot + 0.1 * torch.randn(10, 2, generator=g) for spot in spots.values()])
    labels = torch.tensor([0] * 10 + [2] * 10)
    run = personalize_run(base, Batch(x0, labels), "v", tmp_path / "v", per_class=True, lora_rank=4,
                          prior_samples=500, steps=300)
    assert run.class_names()[-2:] == ["v:0", "v:2"] and run.config["personalized"]["adds"] == 2
    loaded = load_personalized(toy, run.path)
    centre, far = (torch.as_tensor(loaded.sample(300, label=f"v:{c}", seed=1)["points"]) for c in spots)
    a = torch.as_tensor(run.sample(64, label="v:2", seed=4)["points"])
    assert (a - torch.as_tensor(loaded.sample(64, label="v:2", seed=4)["points"])).abs().max() < 1e-4
    # measured: 0.18 from the centre (base class 0: 2.0); 0.54-0.71 from the far spot, 1.5 outside the data's
    # radius (a rank-4 adapter in 300 steps; base class 2: 5.5)
    assert float((centre - spots[0]).norm(dim=1).mean()) < NEW_CLASS_DISTANCE
    assert float((far - spots[2]).norm(dim=1).mean()) < 4 * NEW_CLASS_DISTANCE
    base2 = torch.as_tensor(base.sample(300, label=2, seed=1)["points"])
    assert float((base2 - spots[2]).norm(dim=1).mean()) > 3.0
    with pytest.raises(UsageError, match="--per-class"):
        personalize_run(base, Batch(x0), "w", tmp_path / "w", per_class=True, steps=1)
    with pytest.raises(OptionError, match="--related"):
        personalize_run(base, Batch(x0, labels), "w", tmp_path / "w", per_class=True, related="1", steps=1)


def test_a_base_is_recorded_by_its_shipped_folder_so_a_new_default_does_not_move_it(toy, tmp_path) -> None:
    """Runs made from a shipped checkpoint name it ``shipped:<folder>``: a LoRA personalization of a checkpoint that is
    no longer the domain's default (a newer model ships as the default) still loads its own base; a bare ``shipped``
    (older runs) is the default; any other name is a path."""
    import dataclasses

    from polydiff.plugins.runs import shipped_folder, shipped_name

    shipped = load_run(toy, None)
    assert shipped_name(shipped) == "shipped:moons"
    student = Path(toy.shipped_run).with_name("moons-4step")
    assert shipped_name(load_run(toy, student)) == "shipped:moons-4step"
    assert shipped_folder(toy, "shipped") == Path(toy.shipped_run)
    assert shipped_folder(toy, "shipped:moons-4step") == student
    assert shipped_folder(toy, str(tmp_path)) is None

    moved = dataclasses.replace(toy, shipped_run=student)  # the default moves to another shipped folder
    blob = torch.tensor([3.0, 0.0]) + 0.1 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    adapter = personalize_run(shipped, Batch(blob), "blob", tmp_path / "p", steps=2, lora_rank=2, prior_weight=0.0)
    assert adapter.config["personalized"]["base_run"] == "shipped:moons"
    again = load_personalized(moved, tmp_path / "p")
    a, b = (torch.as_tensor(r.sample(8, label="blob", seed=1)["points"]) for r in (adapter, again))
    assert (a - b).abs().max() < 1e-4  # the adapter sits on moons, not on the new default
