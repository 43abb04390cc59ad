"""The contract's promises at the command line: every usage error exits 2 with one line naming the option or file,
and no command overwrites a run or earlier samples unasked (no byte of the earlier output changes)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polydiff.cli.app import main
from polydiff.plugins import hookimpl
from polydiff.plugins.manager import get_manager

TINY = '[train]\nsteps = 30\nbatch_size = 64\nlog_every = 10\nckpt_every = 30\n\n[network]\nwidth = 16\n'


def cli(capsys, *args) -> tuple[int, str]:
    """Run ``polydiff ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code, capsys.readouterr().err


def tree(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contract")
    (root / "tiny.toml").write_text(TINY)
    with pytest.raises(SystemExit) as done:
        main(["toy", "train", "--out", str(root / "run"), "--config", str(root / "tiny.toml"), "--device", "cpu"])
    assert done.value.code == 0
    return root / "run"


def _bad_configs(root: Path) -> dict[str, Path]:
    files = {"syntax": "[train\nsteps = 3\n", "data_typo": "[data]\ndatset = 'moons'\n",
             "sample_typo": "[sample]\nstep = 3\n", "network_typo": "[network]\nwidht = 3\n",
             "steps_type": '[train]\nsteps = "twenty"\n', "section_typo": "[sampel]\nsteps = 3\n",
             "schedule_typo": "[diffusion.schedule_args]\nP_meen = 0.0\n"}
    out = {}
    for name, text in files.items():
        out[name] = root / f"{name}.toml"
        out[name].write_text(text)
    return out


USAGE_ERRORS = [
    (["toy", "sample", "--sampler", "foo"], "--sampler"),
    (["toy", "sample", "-n", "0"], "'-n'"),
    (["toy", "sample", "--steps", "0"], "--steps"),
    (["toy", "sample", "--guidance", "bogus"], "--guidance"),
    (["toy", "sample", "--toward", "x"], "--toward"),
    (["toy", "sample", "--guidance", "dps"], "--observe-x"),
    (["toy", "sample", "--class", "7"], "--class"),
    (["toy", "sample", "--threads", "0"], "--threads"),
    (["toy", "sample", "--device", "tpu"], "--device"),
    (["toy", "sample", "--run", "/nonexistent/run"], "/nonexistent/run"),
    (["toy", "sample", "--init", "/nonexistent.npy"], "--init"),
    (["toy", "train", "--steps", "0"], "--steps"),
    (["toy", "train", "--steps", "-5"], "--steps"),
    (["toy", "train", "--preset", "bogus"], "--preset"),
    (["toy", "train", "--dataset", "spaceships"], "--data"),
    (["toy", "train", "--config", "/nonexistent.toml"], "--config"),
    (["toy", "train", "--config", "{syntax}"], "syntax.toml"),
    (["toy", "train", "--config", "{data_typo}"], "'datset' in [data]"),
    (["toy", "train", "--config", "{sample_typo}"], "'step' in [sample]"),
    (["toy", "train", "--config", "{network_typo}"], "'widht' in [network]"),
    (["toy", "train", "--config", "{steps_type}"], "[train] steps must be int"),
    (["toy", "train", "--config", "{section_typo}"], "[sampel]"),
    (["toy", "train", "--config", "{schedule_typo}"], "schedule_args ['P_meen']"),
    (["toy", "evaluate", "-n", "0"], "'-n'"),
    (["toy", "export", "/nonexistent/run", "--out", "{tmp}/x"], "/nonexistent/run"),
    (["points", "sample", "--class", "spaceship"], "--class"),
    (["points", "sample", "--points", "0"], "--points"),
    (["points", "evaluate", "--metrics", "xx"], "--metrics"),
    (["audio", "sample", "--digit", "11"], "--digit"),
    (["audio", "sample", "--mask", "0.9:0.1"], "--mask"),
    (["audio", "sample", "--mask", "0.3:0.6"], "--inpaint"),
    (["audio", "train", "--data", "/nonexistent/clips"], "--data"),
    (["molecules", "sample", "--init", "rdkit"], "--init"),
    (["molecules", "sample", "-k", "0"], "'-n' / '-k'"),
    (["molecules", "sample", "C1CC"], "none of the inputs"),
    (["text3d", "generate", ""], "--prompt"),
    (["text3d", "generate"], "PROMPT"),
    (["text3d", "generate", "a red mug", "--iters", "0"], "--iters"),
    (["text3d", "sample-prior", "a red mug", "--field", "cube"], "--field"),
    (["text3d", "evaluate", "--prompts", "a mauve teapot"], "--prompts"),
]


@pytest.mark.parametrize("args,needle", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_with_one_line_naming_the_option(capsys, tmp_path, args, needle):
    configs = _bad_configs(tmp_path)
    args = [a.format(tmp=tmp_path, **configs) for a in args]
    code, err = cli(capsys, *args, *(["--out", tmp_path / "o"] if args[1] in ("sample", "train") else []))
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # a refused command leaves no folder behind


def test_train_refuses_an_existing_run_and_changes_no_byte(capsys, toy_run):
    before = tree(toy_run)
    code, err = cli(capsys, "toy", "train", "--out", toy_run, "--steps", "5", "--device", "cpu")
    assert code == 2 and "--resume" in err and "--overwrite" in err
    assert tree(toy_run) == before


def test_train_overwrite_replaces_only_the_run_files(capsys, toy_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "notes.txt").write_text("mine")
    (tmp_path / "tiny.toml").write_text(TINY)
    code, err = cli(capsys, "toy", "train", "--out", run, "--config", tmp_path / "tiny.toml", "--overwrite",
                    "--steps", "5", "--device", "cpu")
    assert code == 0, err
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 5


def test_export_refuses_a_training_run_and_a_nonempty_folder(capsys, toy_run, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(toy_run, other)
    before = tree(other)
    code, err = cli(capsys, "toy", "export", toy_run, "--out", other)
    assert code == 2 and "training run" in err and tree(other) == before
    code, err = cli(capsys, "toy", "export", toy_run, "--out", other, "--overwrite")
    assert code == 2 and tree(other) == before
    stuff = tmp_path / "stuff"
    stuff.mkdir()
    (stuff / "a.txt").write_text("keep")
    code, err = cli(capsys, "toy", "export", toy_run, "--out", stuff)
    assert code == 2 and (stuff / "a.txt").read_text() == "keep"
    ship = tmp_path / "ship"
    assert cli(capsys, "toy", "export", toy_run, "--out", ship)[0] == 0
    assert cli(capsys, "toy", "export", toy_run, "--out", ship)[0] == 2
    assert cli(capsys, "toy", "export", toy_run, "--out", ship, "--overwrite", "--dtype", "float32")[0] == 0
    assert json.loads((ship / "checkpoint" / "state.json").read_text())["dtype"] == "float32"


def test_sample_never_replaces_earlier_samples_unasked(capsys, toy_run, tmp_path):
    out = tmp_path / "s"
    args = ["toy", "sample", "--run", toy_run, "-n", "50", "--steps", "3", "--device", "cpu", "--out", out]
    assert cli(capsys, *args)[0] == 0
    (out / "mine.txt").write_text("keep")
    before = tree(out)
    code, err = cli(capsys, *args, "--seed", "1")
    assert code == 2 and "--overwrite" in err and tree(out) == before
    assert cli(capsys, *args, "--seed", "1", "--overwrite")[0] == 0
    assert (out / "mine.txt").read_text() == "keep"
    assert json.loads((out / "samples.json").read_text())["settings"]["seed"] == 1


def test_sample_without_out_writes_a_new_numbered_folder_each_time(capsys, toy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert cli(capsys, "toy", "sample", "--run", toy_run, "-n", "20", "--steps", "2", "--device", "cpu")[0] == 0
    assert sorted(p.name for p in (tmp_path / "samples" / "toy").iterdir()) == ["001", "002"]


def test_two_processes_on_one_out_do_not_interleave(toy_run, tmp_path):
    out = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYDIFF_DISABLE_PLUGINS": "audio,molecules,points,text3d"}
    cmd = [sys.executable, "-m", "polydiff.cli", "toy", "sample", "--run", str(toy_run), "-n", "3000", "--steps", "40",
           "--device", "cpu", "--out", str(out)]
    procs = [subprocess.Popen(cmd + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (1, 2), results
    loser = next(err for code, err in results if code != 0)
    assert "being written by another polydiff process" in loser or "already holds files" in loser
    record = json.loads((out / "samples.json").read_text())
    winner = next(seed for seed, (code, _) in zip((1, 2), results) if code == 0)
    assert record["settings"]["seed"] == winner
    assert np.load(out / "samples.npy").shape == (3000, 2)


class RaisingObserver:
    """A plugin whose observer raises on every call."""

    calls = 0

    @hookimpl
    def polydiff_train_step_end(self, run_dir, step, loss):
        RaisingObserver.calls += 1
        raise RuntimeError("observer bug")


def test_a_raising_observer_is_named_once_and_training_goes_on(capsys, tmp_path):
    from polydiff.plugins.runs import resolve_config, train

    manager = get_manager()
    manager.pm.register(RaisingObserver(), name="raiser")
    try:
        domain = manager.domain("toy")
        cfg = resolve_config(domain, "quick", {"train": {"steps": 30, "log_every": 5, "ckpt_every": 30,
                                                         "progress": False}, "network": {"width": 16}})
        train(domain, cfg, tmp_path / "run")
    finally:
        manager.pm.unregister(name="raiser")
        manager.silenced.discard("raiser")
    err = capsys.readouterr().err
    assert RaisingObserver.calls == 1 and err.count("plugin 'raiser' raised in polydiff_train_step_end") == 1
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 30
