"""Latent vs mel-space diffusion of the spoken digits (issue 20, item 2), one table, one run.

The mel model (default: the shipped ``domains/audio/checkpoints/fsdd``) and a latent model (``train --latent AE``;
default: the shipped ``fsdd-latent``) draw the same digits with the same sampler, guidance and seed at each NFE; every
set is scored by the same judge (audio_sc09's protocol: the digit classifier trained on FSDD's training takes, FID
and NDB against its training features) after the same vocoders (Griffin-Lim and the shipped learned vocoder).

Rows: the real test takes, their re-synthesis by each vocoder (the floor any mel model meets), the autoencoder's own
floor (each test take encoded, decoded and vocoded: the best a latent model can do), then each model at each NFE.
Columns as audio_sc09's, with seconds per clip (drawing plus vocoding). Below the table: training seconds per step of
each model (the shared Trainer, its run's own batch, ``--train-steps`` steps, the rate of the second half), and what
the latent run's config records of its autoencoder.

    OMP_NUM_THREADS=1 python benchmarks/audio_latent.py --latent runs/audio-latent --n 300 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_sc09 import Row, first, floors, ours, print_table, vocoders  # noqa: E402

from polydiff.core.samplers import steps_for_nfe  # noqa: E402
from polydiff.domains.audio.data import Prepared, prepare  # noqa: E402
from polydiff.domains.audio.evaluation import Judge, get_judge, reanalyse, score  # noqa: E402
from polydiff.domains.audio.plugin import SHIPPED, make_domain  # noqa: E402
from polydiff.plugins.latent import (AutoencoderRun, autoencoder_folder, latent_train,  # noqa: E402
                                     load_autoencoder)
from polydiff.plugins.runs import Run, load_run, train  # noqa: E402

LATENT = SHIPPED.with_name("fsdd-latent")


def arguments() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mel", type=Path, default=SHIPPED, help="the mel-space run")
    ap.add_argument("--latent", type=Path, default=LATENT, help="the latent run (its autoencoder is read from it)")
    ap.add_argument("--n", type=int, default=300, help="clips per row: the first n FSDD test takes, spread over digits")
    ap.add_argument("--nfe", type=int, nargs="+", default=[25, 50])
    ap.add_argument("--sampler", default="euler_maruyama")
    ap.add_argument("--guidance-scale", type=float, default=1.5)
    ap.add_argument("--gl-iters", type=int, default=32)
    ap.add_argument("--vocoder", type=Path, default=None, help="learned vocoder run (default: the shipped one)")
    ap.add_argument("--train-steps", type=int, default=40, help="training steps timed per model (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--classifier-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    return ap.parse_args()


def autoencoder_of(domain, run_dir: Path) -> AutoencoderRun:
    """The autoencoder a latent run decodes with."""
    spec = json.loads((run_dir / "config.json").read_text())["latent"]
    return load_autoencoder(domain, autoencoder_folder(run_dir, spec["autoencoder"]))


@torch.no_grad()
def autoencoder_floor(ae: AutoencoderRun, p: Prepared, judge: Judge, vocs: dict) -> list[Row]:
    """The test takes encoded and decoded (posterior means), then vocoded by each vocoder and scored."""
    t0 = time.perf_counter()
    decoded = torch.cat([ae.codec.decode(ae.codec.encode(p.test_x[i:i + 64])) for i in range(0, len(p.test_x), 64)])
    coding = time.perf_counter() - t0
    rows: list[Row] = []
    for name, voc in vocs.items():
        t0 = time.perf_counter()
        _, again = reanalyse(p, decoded, voc)
        rows.append((f"floor: autoencoder + {name}", "-", score(judge, again, p.test.labels),
                     (coding + time.perf_counter() - t0) / len(p.test), len(p.test)))
    mse = float((decoded - p.test_x).pow(2).mean())
    rows[0][2]["mse"] = mse
    return rows


def seconds_per_step(domain, run: Run, steps: int, ae: AutoencoderRun | None) -> float:
    """Seconds per training step of ``run``'s recipe (its network, batch and loss) with the shared Trainer, over the
    second half of ``steps`` fresh steps; a latent run trains on cached latents as ``train --latent`` does."""
    cfg = json.loads((run.path / "config.json").read_text())
    half = max(1, steps // 2)
    cfg["train"].update(steps=2 * half, log_every=half, ckpt_every=10 * steps, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        if ae is None:
            train(domain, cfg, Path(tmp) / "run")
        else:
            cfg.pop("latent")
            latent_train(domain, ae, cfg, Path(tmp) / "run")
        rates = [json.loads(line)["steps_per_s"] for line in (Path(tmp) / "run" / "metrics.jsonl").open()]
    return 1.0 / rates[-1]


def main() -> None:
    a = arguments()
    torch.set_num_threads(a.threads)
    domain = make_domain()
    mel, latent = load_run(domain, a.mel), load_run(domain, a.latent)
    ae = autoencoder_of(domain, a.latent)
    if mel.config["data"] != latent.config["data"]:
        raise SystemExit("the two runs were trained on different data; compare runs of the same clips")
    full = prepare(mel.config["data"])
    judge = get_judge(full, epochs=a.classifier_epochs, seed=a.seed)
    p = first(full, a.n)
    sc09 = argparse.Namespace(gl_iters=a.gl_iters, vocoder=a.vocoder, seed=a.seed, guidance_scale=a.guidance_scale)
    vocs = vocoders(sc09, domain, p)
    rows = floors(p, judge, vocs) + autoencoder_floor(ae, p, judge, vocs)
    for k in a.nfe:
        steps = steps_for_nfe(a.sampler, k)
        for name, run in (("mel", mel), ("latent", latent)):
            rows += [(f"{name}: {r[0][len('ours '):]}", *r[1:])
                     for r in ours(sc09, run, p, judge, vocs, a.sampler, steps, len(p.test))]
    timing = {}
    if a.train_steps > 0:
        timing = {"mel": seconds_per_step(domain, mel, a.train_steps, None),
                  "latent": seconds_per_step(domain, latent, a.train_steps, ae)}

    print(f"\nFSDD test takes 0-4: {len(full.train)} train / {len(p.test)} test clips, judge accuracy on real test "
          f"clips {judge.test_accuracy:.3f}; {a.sampler} at guidance {a.guidance_scale}, seed {a.seed}; "
          f"{torch.get_num_threads()} thread(s)")
    print(f"mel run {a.mel}; latent run {a.latent}")
    print_table(rows, 58)
    a_cfg = ae.config["autoencoder"]
    print(f"\nautoencoder: data {a_cfg['data_shape']} -> latent {a_cfg['latent_shape']} (compression "
          f"{torch.tensor(a_cfg['data_shape']).prod() / torch.tensor(a_cfg['latent_shape']).prod():.1f}x), "
          f"test MSE {rows[len(vocs) + 1][2]['mse']:.4g} (normalised log-mel units), scale {a_cfg['scale']:.4g}")
    params = {name: sum(t.numel() for t in run.denoiser.parameters()) for name, run in (("mel", mel),
                                                                                     ("latent", latent))}
    for name, sec in timing.items():
        print(f"training {name}: {sec:.3f} s/step ({1 / sec:.2f} steps/s), {params[name] / 1e6:.2f} M parameters")
    if a.out:
        a.out.write_text(json.dumps({"rows": [{"set": r[0], "nfe": r[1], **r[2], "seconds_per_clip": r[3], "n": r[4]}
                                              for r in rows], "train_seconds_per_step": timing, "parameters": params,
                                     "judge_test_accuracy": judge.test_accuracy, "mel": str(a.mel),
                                     "latent": str(a.latent), "autoencoder": a_cfg}, indent=2))


if __name__ == "__main__":
    main()
