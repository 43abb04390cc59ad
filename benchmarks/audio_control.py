"""Audio controlled by a loudness envelope (issue 20, item 5): does a generated digit follow the rhythm of another clip?

For each digit d, ``--per-digit`` clips of *other* digits (``--pairing same``: of digit d, other voices) are drawn
(seeded) from the base run's test split (unheard voices); their envelopes (``domains/audio/control.py``) control
samples of digit d. In one run, with the same seeds
and sampler settings (the base run's: 50 Euler-Maruyama steps, classifier-free guidance 1.5):

- controlled: the control run at each ``--control-scales`` value (1: the control as trained; > 1: classifier-free
  guidance on the control, one extra pass per step);
- uncontrolled: the base run alone, the same digits and seeds;
- real: a real test clip of digit d (seeded), the agreement two real clips have by chance.

Reported: the mean Pearson correlation between the control's envelope and the clip's envelope, reanalysed from the
vocoded waveform (what a listener hears), over all frames and within the word (frames where the control is above
0.3: all clips are centred with silence around the word, which alone gives r ~ 0.8 by chance); the share of clips
whose correlation is above 0.8; the judge's digit
accuracy (the base run's classifier on the same reanalysed clips) and FID against the training clips (biased upward
at a few hundred clips; compare within the table); seconds per clip.

    OMP_NUM_THREADS=1 python benchmarks/audio_control.py --run runs/audio-envelope --per-digit 20
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


WORD = 0.3
"""Frames where the control's envelope is above this (of its range [0, 1]) hold the word."""


def pearson(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise Pearson correlation of [N, T] tensors, over the frames ``mask`` [N, T] keeps (default: all)."""
    w = torch.ones_like(a) if mask is None else mask.float()
    n = w.sum(-1, keepdim=True).clamp(min=1)
    a, b = a - (a * w).sum(-1, keepdim=True) / n, b - (b * w).sum(-1, keepdim=True) / n
    return (w * a * b).sum(-1) / ((w * a * a).sum(-1) * (w * b * b).sum(-1)).sqrt().clamp(min=1e-8)


def agreement(env: torch.Tensor, controls: torch.Tensor) -> str:
    """Table cells: mean r over all frames, mean r within the word, share of clips with r > 0.8 (all frames)."""
    r, r_word = pearson(env, controls), pearson(env, controls, controls > WORD)
    return f"{r.mean():.3f} | {r_word.mean():.3f} | {(r > 0.8).float().mean():.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="envelope control run (train-control --control envelope)")
    p.add_argument("--per-digit", type=int, default=20)
    p.add_argument("--control-scales", default="1,2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairing", default="other", choices=("other", "same"),
                   help="controls from clips of other digits (a rhythm the digit does not have) or of the same digit "
                        "in other voices")
    a = p.parse_args()

    import polydiff
    from polydiff.domains.audio.control import envelope
    from polydiff.domains.audio.data import prepare
    from polydiff.domains.audio.digits import DIGITS
    from polydiff.domains.audio.evaluation import get_judge, score
    from polydiff.plugins.manager import get_manager
    from polydiff.plugins.runs import shipped_folder
    from polydiff.plugins.runtime import set_threads

    set_threads(None)
    controlled = polydiff.load("audio", a.run)
    where = controlled.config["control"]["base_run"]
    base = polydiff.load("audio", shipped_folder(get_manager().domain("audio"), where) or Path(where))
    data = prepare(base.config["data"])
    judge = get_judge(data)
    test_env, test_labels = envelope(data.test_x)[:, 0], data.test.labels
    g = torch.Generator().manual_seed(a.seed)
    picks, reals, digits = [], [], []
    for d in range(10):
        others = torch.nonzero((test_labels != d) if a.pairing == "other" else (test_labels == d)).flatten()
        same = torch.nonzero(test_labels == d).flatten()
        picks.append(others[torch.randperm(len(others), generator=g)[:a.per_digit]])
        reals.append(same[torch.randint(len(same), (a.per_digit,), generator=g)])
        digits.append(torch.full((a.per_digit,), d))
    picks, reals, digits = torch.cat(picks), torch.cat(reals), torch.cat(digits)
    controls = test_env[picks]

    def measure(label: str, draw) -> None:
        t0 = time.perf_counter()
        mels = []
        for d in range(10):
            rows = digits == d
            mels.append(draw(d, controls[rows]))
        sec = (time.perf_counter() - t0) / len(digits)
        x = torch.cat(mels)
        m = score(judge, x, digits)
        print(f"| {label} | {agreement(envelope(x)[:, 0], controls)} | {m['accuracy']:.3f} | {m['fid']:.2f} "
              f"| {sec:.2f} |", flush=True)

    print(f"{len(digits)} clips ({a.per_digit} per digit), controls: envelopes of test clips of "
          f"{'other digits' if a.pairing == 'other' else 'the same digit (other voices)'}; "
          f"control run {controlled.path}, base {base.path}")
    print("| clips | envelope r | r within the word | r > 0.8 | digit accuracy | FID | s/clip |")
    print("|---|---|---|---|---|---|---|")
    print(f"| real clips of the target digit | {agreement(test_env[reals], controls)} | - | - | - |")
    measure("uncontrolled (base run)", lambda d, c: base.sample(len(c), label=DIGITS[d], seed=a.seed + d)["reanalysed"])
    for scale in (float(s) for s in a.control_scales.split(",")):
        measure(f"controlled, control scale {scale:g}",
                lambda d, c, s=scale: controlled.sample(len(c), label=DIGITS[d], seed=a.seed + d, control=c[:, None],
                                                        control_scale=s)["reanalysed"])


if __name__ == "__main__":
    main()
