"""SC09-style benchmark of the audio domain (DiffWave's protocol with our own digit classifier), one table, one run.

Rows: real test clips, their re-synthesis through each vocoder (the floor any mel model using it meets: Griffin-Lim,
and a learned vocoder run when there is one), and our samples with a long sampler (default 1000 Euler steps) and at a
<= 50 NFE budget (default Heun, 35 NFE), each through every vocoder (the mels are drawn once per row and vocoded by
each). Columns: digit accuracy, FID, IS, mIS, AM, NDB/K and seconds per clip (drawing plus vocoding).

``--data digits`` (default): the espeak-ng set (test voices unheard). Goal of its issue: digit accuracy within 10 points
of the floor and FID <= 2x the floor at <= 50 NFE. ``--data fsdd``: the 300 FSDD test takes (takes 0-4; the judge is
trained on the training takes). Goal of issue 22: at <= 50 NFE, accuracy within 5 points of the real clips' and FID at
most 1.5x the learned vocoder's floor, and that floor below Griffin-Lim's (FID and accuracy). Without ``--run`` the
fsdd table has the real and floor rows only (what needs no mel model).

    python benchmarks/audio_sc09.py --run runs/audio                              # an existing espeak run
    python benchmarks/audio_sc09.py --train --preset quick                        # train first (CPU: minutes)
    python benchmarks/audio_sc09.py --data fsdd --vocoder runs/audio-vocoder       # real and floor rows on FSDD
    python benchmarks/audio_sc09.py --data fsdd --run runs/audio-fsdd --vocoder runs/audio-vocoder --n 300
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from polydiff.core.samplers import nfe, steps_for_nfe
from polydiff.domains.audio.data import Prepared, prepare
from polydiff.domains.audio.evaluation import Judge, get_judge, reanalyse, score
from polydiff.domains.audio.plugin import make_domain
from polydiff.domains.audio.vocoding import SHIPPED_VOCODER, GriffinLim, Learned, load_vocoder, shipped_fits
from polydiff.plugins.runs import load_run, resolve_config, train

COLUMNS = ("accuracy", "fid", "is", "mis", "am", "ndb_over_k")
Row = tuple[str, str, dict[str, float], float, int]


def arguments() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("digits", "fsdd"), default="digits")
    ap.add_argument("--run", type=Path, default=None, help="mel model run (default: runs/audio_sc09 for digits)")
    ap.add_argument("--vocoder", type=Path, default=None,
                    help="learned vocoder run (default: the shipped one where it fits the features)")
    ap.add_argument("--train", action="store_true", help="train --preset into --run first (unless it exists)")
    ap.add_argument("--preset", default=None, help="default: quick for digits, fsdd for fsdd")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--n", type=int, default=None, help="generated clips per row (default: number of test clips)")
    ap.add_argument("--floor-n", type=int, default=None, help="test clips of the real and floor rows (default: all)")
    ap.add_argument("--sampler", default="heun")
    ap.add_argument("--nfe", type=int, default=35)
    ap.add_argument("--long-sampler", default="euler")
    ap.add_argument("--long-steps", type=int, default=1000, help="0 skips the long row")
    ap.add_argument("--long-n", type=int, default=None, help="clips for the long row (default --n)")
    ap.add_argument("--guidance-scale", type=float, default=None)
    ap.add_argument("--gl-iters", type=int, default=32)
    ap.add_argument("--classifier-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    a = ap.parse_args()
    a.preset = a.preset or ("fsdd" if a.data == "fsdd" else "quick")
    if a.run is None and a.data == "digits":
        a.run = Path("runs/audio_sc09")
    return a


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def first(p: Prepared, n: int | None) -> Prepared:
    """``p`` with only its first ``n`` test clips (spread over the classes by taking every k-th)."""
    if n is None or n >= len(p.test):
        return p
    idx = torch.linspace(0, len(p.test) - 1, n).round().long().tolist()
    return Prepared(p.train, p.test.subset(idx), p.normalizer, p.train_x, p.test_x[idx], p.conditional, p.valid,
                    p.valid_x)


def vocoders(a: argparse.Namespace, domain, p: Prepared) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Griffin-Lim, and the learned vocoder (``--vocoder``, else the shipped one where it fits) when there is one."""
    out: dict[str, Callable] = {f"Griffin-Lim {a.gl_iters} it": GriffinLim(p.normalizer.config, a.gl_iters)}
    folder = a.vocoder or (SHIPPED_VOCODER if shipped_fits(p.normalizer.config) else None)
    if folder is not None:
        out[f"vocoder {Path(folder).name}"] = load_vocoder(domain, Path(folder), device(), p.normalizer.config)
    return out


def floors(p: Prepared, judge: Judge, vocs: dict[str, Callable]) -> list[Row]:
    """Real test clips and their re-synthesis by each vocoder."""
    rows: list[Row] = [("real test clips", "-", score(judge, p.test_x, p.test.labels), 0.0, len(p.test))]
    for name, voc in vocs.items():
        t0 = time.perf_counter()
        _, again = reanalyse(p, p.test_x, voc)
        rows.append((f"floor: {name}", "-", score(judge, again, p.test.labels), (time.perf_counter() - t0) / len(p.test),
                     len(p.test)))
    return rows


def ours(a: argparse.Namespace, run, p: Prepared, judge: Judge, vocs: dict[str, Callable], sampler: str, steps: int,
         count: int) -> list[Row]:
    """One row per vocoder for ``count`` clips drawn with ``sampler`` at ``steps`` (the mels are drawn once)."""
    labels = torch.arange(count) % p.train.num_classes
    g = torch.Generator(device=run.device).manual_seed(a.seed)
    t0 = time.perf_counter()
    drawn = run.sample(count, sampler=sampler, steps=steps, generator=g, labels=labels,
                       guidance_scale=a.guidance_scale, gl_iters=a.gl_iters, vocoder="griffin-lim")
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    reanalyse(p, drawn["x"], next(iter(vocs.values())))
    drawing = total - (time.perf_counter() - t0)
    rows = []
    for i, (name, voc) in enumerate(vocs.items()):
        if i == 0:
            again, sec = drawn["reanalysed"], total / count
        else:
            t0 = time.perf_counter()
            _, again = reanalyse(p, drawn["x"], voc)
            sec = (drawing + time.perf_counter() - t0) / count
        rows.append((f"ours {sampler} {steps} + {name}", str(nfe(sampler, steps)), score(judge, again, labels), sec,
                     count))
    return rows


def goal_lines(a: argparse.Namespace, rows: list[Row], n: int, n_test: int) -> list[str]:
    """Whether the issue's goal is met, from the table."""
    by = {r[0]: r[2] for r in rows}
    floor_names = [r[0] for r in rows if r[0].startswith("floor: ")]
    gl, learned = by[floor_names[0]], by[floor_names[1]] if len(floor_names) > 1 else None
    lines = []
    if a.data == "fsdd":
        real = by["real test clips"]
        if learned is not None:
            lines.append(f"learned vocoder floor below Griffin-Lim's: FID {learned['fid']:.4g} vs {gl['fid']:.4g} "
                         f"({'yes' if learned['fid'] < gl['fid'] else 'no'}), accuracy {learned['accuracy']:.3f} vs "
                         f"{gl['accuracy']:.3f} ({'yes' if learned['accuracy'] >= gl['accuracy'] else 'no'})")
        short = [r for r in rows if r[0].startswith("ours") and r[1] != "-" and int(r[1]) <= 50]
        for name, k, m, _, _ in short:
            ref = learned if learned is not None else gl
            lines.append(f"goal at {k} NFE ({name}): accuracy within 5 points of real ({m['accuracy']:.3f} vs "
                         f"{real['accuracy']:.3f}): {'yes' if m['accuracy'] >= real['accuracy'] - 0.05 else 'no'}; "
                         f"FID <= 1.5x the {'learned' if learned is not None else 'Griffin-Lim'} floor ({m['fid']:.4g} "
                         f"vs {1.5 * ref['fid']:.4g}): {'yes' if m['fid'] <= 1.5 * ref['fid'] else 'no'}")
    else:
        short = [r for r in rows if r[0].startswith("ours")][-1]
        m = short[2]
        lines.append(f"goal at {short[1]} NFE: accuracy within 10 points of the floor: "
                     f"{'yes' if m['accuracy'] >= gl['accuracy'] - 0.10 else 'no'} ({m['accuracy']:.3f} vs "
                     f"{gl['accuracy']:.3f}); FID <= 2x floor: {'yes' if m['fid'] <= 2 * gl['fid'] else 'no'} "
                     f"({m['fid']:.4g} vs {gl['fid']:.4g})")
    if n != n_test and any(r[0].startswith("ours") for r in rows):
        lines.append(f"FID of {n} clips against the floor's {n_test}: fewer clips bias FID upward, so judge the goal "
                     "at the default n")
    return lines


def print_table(rows: list[Row], width: int) -> None:
    """The rows as a table: name (``width`` wide), NFE, count, the ``COLUMNS`` metrics and seconds per clip."""
    head = f"{'set':{width}s} {'NFE':>5s} {'n':>5s} " + " ".join(f"{c:>10s}" for c in COLUMNS) + f" {'s/clip':>8s}"
    print(head)
    print("-" * len(head))
    for name, k, m, sec, count in rows:
        print(f"{name:{width}s} {k:>5s} {count:5d} " + " ".join(f"{m.get(c, float('nan')):10.4g}" for c in COLUMNS)
              + f" {sec:8.3f}")


def main() -> None:
    a = arguments()
    domain = make_domain()
    t_train = None
    if a.train and a.run is not None and not (a.run / "config.json").is_file():
        cfg = resolve_config(domain, a.preset)
        if a.train_steps:
            cfg["train"]["steps"] = a.train_steps
        t0 = time.perf_counter()
        train(domain, cfg, a.run, device=device())
        t_train = time.perf_counter() - t0
    run = load_run(domain, a.run, device()) if a.run is not None else None
    data = run.config["data"] if run is not None else resolve_config(domain, a.preset)["data"]
    full = prepare(data)
    if a.data == "fsdd" and data["source"] != "fsdd":
        raise SystemExit(f"--data fsdd needs an FSDD run; {a.run} was trained on {data['source']!r}")
    t0 = time.perf_counter()
    judge = get_judge(full, epochs=a.classifier_epochs, seed=a.seed)
    t_judge = time.perf_counter() - t0
    p = first(full, a.floor_n)
    vocs = vocoders(a, domain, p)
    rows = floors(p, judge, vocs)
    n = a.n or len(full.test)
    if run is not None:
        if a.long_steps > 0:
            rows += ours(a, run, p, judge, vocs, a.long_sampler, a.long_steps, a.long_n or n)
        rows += ours(a, run, p, judge, vocs, a.sampler, steps_for_nfe(a.sampler, a.nfe), n)

    what = ("FSDD test takes 0-4 (every speaker heard in training, other takes)" if a.data == "fsdd"
            else "SC09-like spoken digits (test voices unheard)")
    print(f"\n{what}: {len(full.train)} train / {len(p.test)} test clips, judge accuracy on real test clips "
          f"{judge.test_accuracy:.3f}; FID/NDB vs training features; run {a.run}")
    print_table(rows, 52)
    print()
    for line in goal_lines(a, rows, n, len(p.test)):
        print(line)
    print(f"timings: training {t_train if t_train is None else round(t_train)} s, judge {t_judge:.0f} s; "
          f"device {device()}")
    if a.out:
        a.out.write_text(json.dumps({"rows": [{"set": r[0], "nfe": r[1], **r[2], "seconds_per_clip": r[3], "n": r[4]}
                                              for r in rows], "judge_test_accuracy": judge.test_accuracy,
                                     "data": a.data, "run": str(a.run)}, indent=2))


if __name__ == "__main__":
    main()
