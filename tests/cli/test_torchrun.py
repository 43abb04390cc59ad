"""The CLI under torchrun: sampling shards -n over the ranks and writes each sample exactly once."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from polydiff.cli.domain_app import shard


def test_shards_cover_every_index_once():
    for n in (1, 7, 10, 33):
        for world in (1, 2, 3, 8):
            parts = [shard(n, r, world) for r in range(world)]
            covered = [i for first, count in parts for i in range(first, first + count)]
            assert covered == list(range(n)) and max(c for _, c in parts) - min(c for _, c in parts) <= 1


def test_sampling_under_torchrun_writes_each_sample_once(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYDIFF_DISABLE_PLUGINS": "audio,molecules,points,text3d,ecg"}
    out = tmp_path / "s"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "polydiff.cli", "toy", "sample", "-n", "7", "--steps", "3", "--device", "cpu",
                           "--class", "all", "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    index = json.loads((out / "samples.json").read_text())
    assert index["world_size"] == 2 and [p["n"] for p in index["shards"]] == [4, 3]
    parts = [np.load(out / p["folder"] / "samples.npy") for p in index["shards"]]
    assert [len(p) for p in parts] == [4, 3]
    assert len({tuple(row) for p in parts for row in p.round(6)}) == 7
    seeds = [json.loads((out / p["folder"] / "samples.json").read_text())["settings"]["seed"] for p in index["shards"]]
    assert seeds == [0, 1]
