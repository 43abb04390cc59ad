"""The built wheel is the product: it holds every module and shipped checkpoint, and installed outside the checkout
it samples (issue: a wheel that held 30 files and no domain)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"polydiff": "polydiff", "core": "polydiff/core", "plugins": "polydiff/plugins", "cli": "polydiff/cli",
            "domains": "polydiff/domains"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = out.glob("polydiff-*.whl")
    return found


def _tracked(pattern: str) -> list[str]:
    files = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return files or [str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)]


def test_the_wheel_holds_every_module_and_shipped_checkpoint(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, target in PACKAGES.items():
        for path in _tracked(f"{folder}/**/*.py") + _tracked(f"{folder}/*.py"):
            inside = path.replace(folder, target, 1)
            assert inside in names, f"{path} is not in the wheel"
    shipped = [p for p in ROOT.glob("domains/*/checkpoints/*/config.json")]
    assert len(shipped) >= 6
    for cfg in shipped:
        run = cfg.parent.relative_to(ROOT / "domains")
        for name in ("config.json", "checkpoint/model.safetensors", "checkpoint/state.json"):
            assert f"polydiff/domains/{run}/{name}" in names, f"{run}/{name} is not in the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for domain in ("toy", "audio", "points", "molecules", "text3d"):
        assert f"{domain} = polydiff.domains.{domain}.plugin" in text


def test_the_installed_wheel_samples_outside_the_checkout(wheel, tmp_path):
    """Install the wheel (no dependencies) into a new venv whose dependencies come from this environment's
    site-packages, then run the console script from a folder outside the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                           str(site), str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (site / "_polydiff_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": "", "POLYDIFF_DISABLE_PLUGINS": "ecg,example"}
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import polydiff, polydiff.domains.toy.plugin as p; "
                            "print(polydiff.__version__, p.__file__)"], capture_output=True, text=True, cwd=work,
                           env=env, check=True).stdout.split()
    assert where[0] == "0.1.0" and where[1].startswith(str(site)), where
    sample = subprocess.run([python, "-m", "polydiff.cli", "toy", "sample", "-n", "200", "--steps", "5", "--out", "s"],
                            capture_output=True, text=True, cwd=work, env=env)
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert json.loads((work / "s" / "samples.json").read_text())["run"].startswith(str(site))
    demo = subprocess.run([python, "-m", "polydiff.cli", "demo", "--domains", "toy", "-n", "50", "--out", "d"],
                          capture_output=True, text=True, cwd=work, env=env)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (work / "d" / "toy" / "samples.png").is_file()
    failed = subprocess.run([python, "-m", "polydiff.cli", "demo", "--domains", "nosuch", "--out", "e"],
                            capture_output=True, text=True, cwd=work, env=env)
    assert failed.returncode == 1 and "nosuch" in failed.stderr
