"""The plugin manager: built-ins via entry points, broken plugins reported by name, disabling, duplicates."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from polydiff.plugins import hookimpl
from polydiff.plugins.manager import PluginManager


def polydiff_cmd(*args, env_extra=None, pythonpath=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "polydiff.cli", *args], capture_output=True, text=True, env=env)


def fake_distribution(root: Path, name: str, module: str, source: str) -> Path:
    """A minimal installed distribution (module + dist-info with an entry point) importable from ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[polydiff]\n{name} = {module}\n")
    return root


def test_builtin_domains_register_like_third_party_ones():
    m = PluginManager()
    assert "toy" in m.domains
    info = m.plugins["toy"]
    assert info.builtin and info.distribution == "polydiff" and info.provides["domains"] == ["toy"]


def test_a_plugin_that_raises_on_import_is_reported_and_others_work(tmp_path):
    fake_distribution(tmp_path, "brokenplug", "brokenplug_mod", "raise RuntimeError('boom at import')\n")
    done = polydiff_cmd("plugins", pythonpath=tmp_path)
    assert done.returncode == 0
    assert "brokenplug" in done.stdout and "boom at import" in done.stdout
    assert "toy" in done.stdout
    warned = [l for l in done.stderr.splitlines() if "brokenplug" in l]
    assert len(warned) == 1 and "Traceback" not in done.stderr
    toy = polydiff_cmd("toy", "info", pythonpath=tmp_path)
    assert toy.returncode == 0 and "presets" in toy.stdout


def test_disable_by_name(tmp_path):
    fake_distribution(tmp_path, "brokenplug", "brokenplug_mod", "raise RuntimeError('boom')\n")
    done = polydiff_cmd("plugins", pythonpath=tmp_path, env_extra={"POLYDIFF_DISABLE_PLUGINS": "brokenplug,toy"})
    assert "boom" not in done.stdout + done.stderr
    assert "disabled" in done.stdout
    no_toy = polydiff_cmd("toy", "info", env_extra={"POLYDIFF_DISABLE_PLUGINS": "toy"})
    assert no_toy.returncode == 2


class Twice:
    @hookimpl
    def polydiff_register_samplers(self, register):
        register("heun", lambda *a, **k: None)


class RaisesInRegistration:
    @hookimpl
    def polydiff_register_samplers(self, register):
        raise ValueError("cannot register")


def test_registering_a_name_twice_names_both_plugins():
    m = PluginManager(load_entry_points=False, extra={"twice": Twice(), "bad": RaisesInRegistration()})
    errors = m.errors()
    assert any("'polydiff.core'" in e and "'twice'" in e and "heun" in e for e in errors), errors
    assert any("'bad'" in e and "cannot register" in e for e in errors), errors
    from polydiff.core.samplers import SAMPLERS, heun

    assert SAMPLERS["heun"] is heun  # the first registration stands


def test_unknown_domain_is_a_clear_error():
    m = PluginManager(load_entry_points=False)
    with pytest.raises(KeyError, match="no domain 'nope' is registered"):
        m.domain("nope")


def test_the_lazy_builtins_are_the_cores_tables():
    """The manager names the core's samplers, schedules and guidance without importing torch; the names and the
    objects they resolve to must be the core's own."""
    from polydiff.core import guidance, samplers, schedules

    m = PluginManager(load_entry_points=False)
    assert set(m.samplers) == set(samplers.SAMPLERS)
    assert all(m.sampler(n) is samplers.SAMPLERS[n] for n in samplers.SAMPLERS)
    assert set(m.schedules) == set(schedules.SCHEDULES)
    assert all(m.schedule(n) is schedules.SCHEDULES[n] for n in schedules.SCHEDULES)
    assert m.guidance_method("cfg") is guidance.cfg


def test_help_imports_no_torch():
    """``polydiff --help`` and a domain's ``--help`` are declarations only: torch is not imported."""
    code = ("import sys; from polydiff.cli.app import main\n"
            "for argv in (['--help'], ['toy', '--help'], ['points', 'sample', '--help'], ['molecules', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "POLYDIFF_DISABLE_PLUGINS": "ecg"})
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-2000:]
