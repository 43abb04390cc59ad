"""A listening check of the audio model (issue 22 item 4): generated clips beside real ones, as pictures and as the
statistics ``sox stat`` and a phonetician would read, for the real test takes, their floor through each vocoder, and
our clips through each vocoder.

What it writes to ``--out``: ``listening.png`` (linear-frequency spectrograms of the waveforms themselves, not the
model's log-mels, so vocoder artefacts show: one column per digit, rows real / real through the learned vocoder / ours
+ learned vocoder / ours + Griffin-Lim), the WAVs of those clips, and ``listening.json`` with the statistics below
(mean and standard deviation over ``-n`` clips per row; real rows use the first ``-n`` test takes spread over the
digits, ours the same number of clips cycling the digits).

Statistics per clip (all independent of loudness normalisation):
- ``word_s``: seconds above -30 dB of the clip's peak frame energy (20 ms frames): how long the word lasts;
- ``crest_db``: peak over RMS of the word in dB (sox's peak and RMS levels; speech ~ 15-20 dB, noise ~ 10 dB);
- ``f0_hz``: median pitch of the voiced frames (``torchaudio.functional.detect_pitch_frequency``, 60-400 Hz kept);
- ``zcr_hz``: zero crossings per second within the word, halved (sox's "rough frequency");
- ``centroid_hz``: energy-weighted mean frequency within the word;
- ``flatness``: spectral flatness within the word (geometric over arithmetic mean of the power spectrum; 0 for a pure
  tone, 1 for white noise): phase artefacts and hiss raise it;
- ``silence_db``: mean energy of the frames outside the word relative to the loudest frame (background hiss and
  smeared phase show here).

    OMP_NUM_THREADS=1 python benchmarks/audio_listening.py --out runs/listening        # the shipped default model
    python benchmarks/audio_listening.py --run runs/audio-fsdd -n 300 --out runs/listening
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

FRAME_S = 0.02
WORD_DB = -30.0


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="mel model run (default: the shipped default model)")
    p.add_argument("-n", type=int, default=100, help="clips per row for the statistics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="folder for listening.png, the WAVs and listening.json")
    return p.parse_args()


def frame_db(wave: torch.Tensor, rate: int) -> torch.Tensor:
    """Energy of each ``FRAME_S`` frame in dB relative to the loudest frame."""
    hop = int(FRAME_S * rate)
    energy_db = 10 * torch.log10(wave[: len(wave) // hop * hop].reshape(-1, hop).pow(2).mean(-1) + 1e-12)
    return energy_db - energy_db.max()


def word_mask(wave: torch.Tensor, rate: int) -> torch.Tensor:
    """Samples of the frames within ``WORD_DB`` of the loudest frame (the word, without its silence)."""
    keep = frame_db(wave, rate) >= WORD_DB
    hop = int(FRAME_S * rate)
    return torch.cat([keep.repeat_interleave(hop), torch.zeros(len(wave) - len(keep) * hop, dtype=torch.bool)])


def clip_stats(wave: torch.Tensor, rate: int) -> dict[str, float]:
    """The statistics of one clip (see the module docstring)."""
    import torchaudio.functional as AF

    mask, db = word_mask(wave, rate), frame_db(wave, rate)
    word = wave[mask]
    rms = word.pow(2).mean().sqrt()
    spectrum = torch.stft(word, 256, 64, window=torch.hann_window(256), return_complex=True).abs().pow(2) + 1e-12
    freqs = torch.linspace(0, rate / 2, spectrum.shape[0])
    f0 = AF.detect_pitch_frequency(wave[None], rate, frame_time=0.02, win_length=15)[0]
    voiced = f0[(f0 >= 60) & (f0 <= 400)]
    return {"word_s": float(mask.sum()) / rate,
            "crest_db": float(20 * torch.log10(word.abs().max() / rms)),
            "f0_hz": float(voiced.median()) if len(voiced) else float("nan"),
            "zcr_hz": float(((word[1:] * word[:-1]) < 0).sum()) / (len(word) / rate) / 2,
            "centroid_hz": float((spectrum.sum(-1) * freqs).sum() / spectrum.sum()),
            "flatness": float((spectrum.log().mean(0).exp() / spectrum.mean(0)).mean()),
            "silence_db": float(10 * torch.log10(10 ** (db[db < WORD_DB] / 10).mean())) if bool((db < WORD_DB).any())
            else float("nan")}


def summary(waves: torch.Tensor, rate: int) -> dict[str, list[float]]:
    """Mean and standard deviation of each statistic over the clips."""
    rows = [clip_stats(w, rate) for w in waves]
    return {k: [float(np.nanmean([r[k] for r in rows])), float(np.nanstd([r[k] for r in rows]))] for k in rows[0]}


def plot(path: Path, rows: dict[str, torch.Tensor], titles: list[str], rate: int) -> None:
    """One row of linear spectrograms per entry of ``rows`` (one column per clip)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(titles)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.5 * len(rows)), squeeze=False)
    for r, (name, waves) in enumerate(rows.items()):
        for c in range(cols):
            spec = torch.stft(waves[c], 256, 64, window=torch.hann_window(256), return_complex=True).abs()
            ax = axes[r, c]
            ax.imshow((20 * torch.log10(spec / spec.max() + 1e-5)).numpy(), origin="lower", aspect="auto",
                      vmin=-80, vmax=0, cmap="magma", extent=(0, waves.shape[-1] / rate, 0, rate / 2000))
            ax.set_xticks([])
            ax.set_yticks([] if c else [0, rate / 4000, rate / 2000])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{name}\nkHz", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    a = arguments()
    import polydiff
    from polydiff.domains.audio.clips import write_wav
    from polydiff.domains.audio.data import prepare
    from polydiff.domains.audio.evaluation import reanalyse
    from polydiff.domains.audio.vocoding import GRIFFIN_LIM, resolve_vocoder
    from polydiff.plugins.runtime import set_threads

    set_threads(None)
    run = polydiff.load("audio", a.run)
    p = prepare(run.config["data"])
    rate = p.normalizer.config.sample_rate
    learned = resolve_vocoder(None, run, int(run.config["sample"]["gl_iters"]))
    n = min(a.n, len(p.test))
    idx = torch.linspace(0, len(p.test) - 1, n).round().long()
    labels = torch.arange(n) % p.train.num_classes
    drawn = run.sample(n, labels=labels, generator=torch.Generator().manual_seed(a.seed), vocoder=GRIFFIN_LIM)

    def vocode(x: torch.Tensor, voc: Callable) -> torch.Tensor:
        return reanalyse(p, x, voc)[0]

    vname = Path(learned.name).name
    rows = {"real": p.test.waves[idx],
            f"real via {vname}": vocode(p.test_x[idx], learned),
            f"ours + {vname}": vocode(drawn["x"], learned),
            "ours + Griffin-Lim": drawn["waves"]}
    stats = {name: summary(w, rate) for name, w in rows.items()}
    a.out.mkdir(parents=True, exist_ok=True)
    names = p.train.class_names
    first = [int(torch.nonzero(p.test.labels[idx] == d)[0]) for d in range(p.train.num_classes)]
    picks = {name: w[first] if name.startswith("real") else w[: p.train.num_classes] for name, w in rows.items()}
    plot(a.out / "listening.png", picks, names, rate)
    for name, w in picks.items():
        for d, wave in enumerate(w):
            write_wav(a.out / f"{name.replace(' ', '_').replace('+', 'and')}_{names[d]}.wav", wave, rate)
    (a.out / "listening.json").write_text(json.dumps({"n": n, "rate": rate, "stats": stats}, indent=1))
    keys = list(next(iter(stats.values())))
    print(f"{'':24s}" + "".join(f"{k:>16s}" for k in keys))
    for name, s in stats.items():
        print(f"{name:24s}" + "".join(f"{s[k][0]:>9.3g} ±{s[k][1]:<5.2g}" for k in keys))
    print(f"{n} clips per row; {a.out / 'listening.png'}")


if __name__ == "__main__":
    main()
