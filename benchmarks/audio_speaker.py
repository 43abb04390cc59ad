"""A new real speaker from 10 clips (issue 21): personalize the shipped espeak-voiced digits model to one FSDD speaker
with ``personalize --per-class`` (classes SPEAKER:zero ... SPEAKER:nine), generate all ten digits in that voice, and
edit held-out clips of the speaker into another digit. Measured in one run:

- digit accuracy of the generated clips by the FSDD judge (the classifier trained on real FSDD training takes);
- speaker similarity: for each digit, the mean distance of the generated clips to each FSDD speaker's held-out clips
  of that digit (test takes 0-4), in a fixed feature space: per-clip means and standard deviations of 20 MFCCs over
  the voiced frames, standardised over all held-out clips. The digit counts as in the target's voice when the target
  is the nearest speaker. The same for the base model's clips (control) and for the instances themselves;
- edits: held-out clips of the speaker (digit d) inverted under SPEAKER:d and regenerated as SPEAKER:(d+1): judge
  accuracy on the new digit, and whether the speaker nearest to the edit is still the source speaker.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audio_speaker.py --speaker lucas --out runs/audio-lucas

``--steps 0`` personalizes nothing: the edits then run on the base itself under its plain digit classes, which is how
the FSDD model (it heard every FSDD speaker in training) changes a held-out take's digit and keeps the voice:

    python benchmarks/audio_speaker.py --base domains/audio/checkpoints/fsdd --steps 0 -n 0 --speaker lucas \
        --out runs/edit-fsdd --edit-method invert

Instances are the speaker's take ``--take`` of each digit (a training take); nothing held out is seen in training.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from polydiff.domains.audio.plugin import ESPEAK_SHIPPED

MFCC_RATE = 8000


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speaker", default="lucas")
    p.add_argument("--take", type=int, default=10, help="the training take used as the instances (one per digit)")
    p.add_argument("--base", type=Path, default=ESPEAK_SHIPPED,
                   help="base run (default: the shipped espeak digits model)")
    p.add_argument("--out", type=Path, default=Path("runs/audio-speaker"))
    p.add_argument("-n", type=int, default=10, help="generated clips per digit (0: only the edits)")
    p.add_argument("--steps", type=int, default=400, help="fine-tuning steps (0: edit with the base itself)")
    p.add_argument("--lora-rank", type=int, default=None)
    p.add_argument("--prior-samples", type=int, default=100)
    p.add_argument("--prior-weight", type=float, default=1.0)
    p.add_argument("--edits", type=int, default=20, help="held-out clips of the speaker to edit (0: none)")
    p.add_argument("--edit-method", default="invert", help="invert or sdedit")
    p.add_argument("--edit-strength", type=float, default=1.0)
    p.add_argument("--edit-guidance-scale", type=float, default=None, help="default: the run's")
    p.add_argument("--reuse", action="store_true", help="load --out if it holds a run instead of personalizing")
    return p.parse_args()


def mfcc_stats(waves: torch.Tensor, rate: int) -> torch.Tensor:
    """Per-clip mean and std of 20 MFCCs over the voiced frames (log energy within 30 dB of the clip's loudest)."""
    import torchaudio

    from polydiff.domains.audio.clips import resample

    w = torch.stack([resample(x, rate, MFCC_RATE) for x in waves]) if rate != MFCC_RATE else waves
    mfcc = torchaudio.transforms.MFCC(MFCC_RATE, n_mfcc=20, melkwargs={"n_fft": 256, "hop_length": 80,
                                                                      "n_mels": 40})(w)  # [N, 20, frames]
    energy = mfcc[:, 0] / math.sqrt(40)  # the mean of the 40 log-mel bands in dB (orthonormal DCT)
    voiced = energy >= energy.max(dim=1, keepdim=True).values - 30.0
    out = []
    for m, v in zip(mfcc, voiced):
        frames = m[:, v] if int(v.sum()) > 1 else m
        out.append(torch.cat([frames.mean(1), frames.std(1)]))
    return torch.stack(out)


def nearest_speakers(feats: torch.Tensor, held: dict[str, torch.Tensor]) -> tuple[str, dict[str, float]]:
    """The speaker whose held-out clips are nearest on average to ``feats`` and every speaker's mean distance."""
    dist = {s: float(torch.cdist(feats, h).mean()) for s, h in held.items()}
    return min(dist, key=dist.get), dist


def main() -> None:
    a = arguments()
    import polydiff
    from polydiff.domains.audio.clips import load_audio, prepare_clip, resample
    from polydiff.domains.audio.data import prepare
    from polydiff.domains.audio.digits import DIGITS
    from polydiff.domains.audio.evaluation import get_judge
    from polydiff.domains.audio.features import LogMel
    from polydiff.domains.audio.fsdd import locate
    from polydiff.domains.audio.sampling import sampling_spec
    from polydiff.domains.audio.classifier import predict
    from polydiff.plugins.capabilities import PersonalizeOptions
    from polydiff.plugins.editing import edit_run
    from polydiff.plugins.options import build_options
    from polydiff.plugins.personalize import instance_reader, load_personalized, personalize_command
    from polydiff.plugins.runs import resolve_config
    from polydiff.plugins.runtime import set_threads

    set_threads(None)
    base = polydiff.load("audio", a.base)
    domain = base.domain
    fsdd = prepare(resolve_config(domain, "fsdd")["data"])
    judge = get_judge(fsdd)
    lm = LogMel(fsdd.normalizer.config)

    def judge_digits(waves: torch.Tensor, rate: int) -> torch.Tensor:
        w = torch.stack([resample(x, rate, fsdd.normalizer.config.sample_rate) for x in waves])
        w = w[:, :fsdd.normalizer.config.clip_samples]
        probs, _ = predict(judge.model, fsdd.normalizer.normalize(lm(w * (0.9 / w.abs().amax(1, keepdim=True)))))
        return probs.argmax(1)

    test = fsdd.test
    who = [stem.split("_")[1] for stem in test.speakers]  # a clip's id is its file stem, digit_speaker_take
    speakers = sorted(set(who))
    rate_real = fsdd.normalizer.config.sample_rate
    real_feats = mfcc_stats(test.waves, rate_real)
    mu, sd = real_feats.mean(0), real_feats.std(0) + 1e-6
    norm = lambda f: (f - mu) / sd  # noqa: E731
    held = {(s, d): norm(real_feats[[i for i, (sp, lab) in enumerate(zip(who, test.labels.tolist()))
                                     if sp == s and lab == d]]) for s in speakers for d in range(10)}

    source = locate(None) / "recordings"
    with tempfile.TemporaryDirectory() as tmp:
        for d in range(10):
            (Path(tmp) / f"{d}_{a.speaker}_{a.take}.wav").symlink_to(source / f"{d}_{a.speaker}_{a.take}.wav")
        t0 = time.perf_counter()
        if a.steps == 0:
            run = base
        elif a.reuse and (a.out / "config.json").is_file():
            run = load_personalized(domain, a.out)
        else:
            options = build_options(PersonalizeOptions, {
                "run": a.base, "instances": Path(tmp), "name": a.speaker, "out": a.out, "per_class": True,
                "steps": a.steps, "lora_rank": a.lora_rank, "prior_samples": a.prior_samples,
                "prior_weight": a.prior_weight, "overwrite": True})
            run = personalize_command(domain, options, str(base.device), command=None, progress=True)
        t_fit = time.perf_counter() - t0
        instance_waves = torch.stack([prepare_clip(*load_audio(source / f"{d}_{a.speaker}_{a.take}.wav"),
                                                   n=fsdd.normalizer.config.clip_samples, target=rate_real)
                                      for d in range(10)])
    rate_gen = sampling_spec(base.config).normalizer.config.sample_rate
    label = (lambda d: DIGITS[d]) if run is base else (lambda d: f"{a.speaker}:{DIGITS[d]}")  # noqa: E731

    rows, hits, base_hits, inst_hits, correct = [], 0, 0, 0, 0
    t0 = time.perf_counter()
    for d in range(10 if a.n else 0):
        mine = run.sample(a.n, label=label(d), seed=d)["waves"]
        theirs = base.sample(a.n, label=DIGITS[d], seed=d)["waves"]
        near, dist = nearest_speakers(norm(mfcc_stats(mine, rate_gen)), {s: held[s, d] for s in speakers})
        near_base, _ = nearest_speakers(norm(mfcc_stats(theirs, rate_gen)), {s: held[s, d] for s in speakers})
        near_inst, _ = nearest_speakers(norm(mfcc_stats(instance_waves[d:d + 1], rate_real)),
                                        {s: held[s, d] for s in speakers})
        acc = float((judge_digits(mine, rate_gen) == d).float().mean())
        hits += near == a.speaker
        base_hits += near_base == a.speaker
        inst_hits += near_inst == a.speaker
        correct += acc
        others = min(v for s, v in dist.items() if s != a.speaker)
        rows.append((DIGITS[d], acc, dist[a.speaker], others, near, near_base))
    t_gen = (time.perf_counter() - t0) / max(1, 20 * a.n)

    if a.n:
        print(f"\nspeaker {a.speaker}: {a.speaker}:DIGIT from take {a.take} of each digit; base {base.path}; "
              f"personalized in {t_fit:.0f} s ({a.steps} steps, lora rank {a.lora_rank}, {a.prior_samples} prior "
              f"samples at weight {a.prior_weight}); {a.n} clips per digit")
        print("| digit | judge accuracy | distance to the speaker's held-out clips | nearest other speaker | nearest "
              "speaker | base model's nearest |")
        print("|---|---|---|---|---|---|")
        for name, acc, own, other, near, near_base in rows:
            print(f"| {name} | {acc:.2f} | {own:.2f} | {other:.2f} | {near} | {near_base} |")
        print(f"digits in {a.speaker}'s voice (nearest speaker): {hits}/10 (goal >= 8); the base model's clips: "
              f"{base_hits}/10; the instances themselves: {inst_hits}/10; judge accuracy {correct / 10:.3f}; "
              f"{t_gen:.2f} s per clip")
    result = {"speaker": a.speaker, "hits": hits, "base_hits": base_hits, "instance_hits": inst_hits,
              "accuracy": correct / 10, "rows": rows}

    if a.edits:
        files = [source / f"{d}_{a.speaker}_{take}.wav" for take in range(5) for d in range(10)][:a.edits]
        edited_ok, kept, n_edit = 0, 0, 0
        for f in files:  # held-out test takes
            d = int(f.name.split("_")[0])
            batch = instance_reader(domain)(f, run.config)
            to = (d + 1) % 10
            out = edit_run(run, batch, label(to), source=label(d),
                           method=a.edit_method, strength=a.edit_strength, guidance_scale=a.edit_guidance_scale)
            edited_ok += int(judge_digits(out["waves"], rate_gen)[0] == to)
            near, _ = nearest_speakers(norm(mfcc_stats(out["waves"], rate_gen)), {s: held[s, to] for s in speakers})
            kept += near == a.speaker
            n_edit += 1
        scale = "the run's" if a.edit_guidance_scale is None else a.edit_guidance_scale
        print(f"edits ({a.edit_method}, strength {a.edit_strength}, guidance {scale}) "
              f"of {n_edit} held-out clips of {a.speaker} into the next digit: new digit per the judge "
              f"{edited_ok}/{n_edit}, nearest speaker still {a.speaker} {kept}/{n_edit}")
        result.update(edits=n_edit, edit_success=edited_ok, edit_kept_speaker=kept, edit_method=a.edit_method,
                      edit_strength=a.edit_strength, edit_guidance_scale=a.edit_guidance_scale)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"speaker-{a.edit_method}-{a.edit_strength}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
