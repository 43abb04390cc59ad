"""Conformer generation: a polydiff molecules run vs. RDKit ETKDGv3 on the QM9 test split (not run by CI).

Data: QM9 (qm9pack), test split (Index % 20 == 0), molecules with >= ``--min-heavy`` heavy atoms, ``--n`` of them
evenly spread over the split (QM9 is ordered by size, so the first ones would be the smallest).
Metric: per molecule the min over K conformers of the heavy-atom RMSD to the DFT geometry after symmetry-aware
alignment (RDKit GetBestRMS); median and mean of that minimum, coverage at 0.5 A, time per conformer.
Peer: ETKDGv3 with the same K. The model (default: the shipped checkpoint) starts from ETKDG embeddings noised to the
run's ``init_sigma`` (SDEdit, the run's Heun steps) and, as a second row, from pure noise (``--noise-steps``); a Heun
run of s intervals costs 2 s - 1 denoiser evaluations per conformer. The model's conformers are validated as
``sample`` writes them (repaired, dropped or replaced by ETKDG; ``--no-validate`` scores them raw). ETKDG draws K
distinct conformers for every seed (seed 0 is mapped to another: RDKit repeats one conformer K times for it, which
made the ETKDG rows before this change a K = 1 baseline).

    python benchmarks/molecules_vs_etkdg.py --n 200 --k 5
    python benchmarks/molecules_vs_etkdg.py --run runs/molecules --inits noise --noise-steps 25
    python benchmarks/molecules_vs_etkdg.py --run none --n 200 --k 5            # ETKDG alone
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from polydiff.core.samplers import nfe
from polydiff.domains.molecules.metrics import benchmark, etkdg_method, format_table
from polydiff.domains.molecules.qm9 import load_qm9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="shipped",
                   help="run folder of `polydiff molecules train`, shipped (default) or none")
    p.add_argument("--inits", default="etkdg,noise", help="model starts to compare: etkdg and/or noise")
    p.add_argument("--init-sigma", type=float, default=None,
                   help="noise level of the ETKDG starts (default: the run's)")
    p.add_argument("--noise-steps", type=int, default=25, help="Heun intervals from pure noise")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--min-heavy", type=int, default=6)
    p.add_argument("--subsample", type=int, default=1, help="use the QM9 subset of the quick preset (e.g. 10)")
    p.add_argument("--steps", type=int, default=None, help="Heun intervals from the ETKDG starts (default: the run's)")
    p.add_argument("--sampler", default="heun")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-validate", action="store_true",
                   help="score the model's raw conformers (default: validated, repaired or dropped as `sample` does)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    qm9 = load_qm9(subsample=args.subsample)
    test = qm9.split("test")
    test = test[qm9.heavy_atom_counts()[test] >= args.min_heavy]
    test = test[np.linspace(0, len(test) - 1, min(args.n, len(test))).round().astype(np.int64)]  # spread over the split
    refs = [qm9.mol(int(m)) for m in test]
    print(f"QM9 test split{f' (subsample {args.subsample})' if args.subsample > 1 else ''}: {len(refs)} molecules with >= {args.min_heavy} heavy atoms, K = {args.k} "
          f"({sum(qm9.skipped.values())} of {len(qm9) + sum(qm9.skipped.values())} QM9 rows skipped at parsing)")

    methods = {"etkdg": etkdg_method(args.seed)}
    if args.run != "none":
        from rdkit import Chem

        from polydiff.domains.molecules.io import MolInput
        from polydiff.plugins.manager import get_manager
        from polydiff.plugins.runs import load_run

        domain = get_manager().domain("molecules")
        run = load_run(domain, None if args.run == "shipped" else args.run, args.device)
        gen = torch.Generator(device=run.device).manual_seed(args.seed)

        def model(init: str, steps: int):
            def method(mols, k):
                inputs = [MolInput(str(i), m) for i, m in enumerate(mols)]
                request = run.request(k, sampler=args.sampler, steps=steps, generator=gen, init=init,
                                      init_sigma=args.init_sigma, no_validate=args.no_validate)
                made = dict(domain.generate(run, request, inputs)["molecules"])
                return [made.get(str(i), Chem.Mol(m)) for i, m in enumerate(mols)]  # refused: no conformer
            return method

        for init in args.inits.split(","):
            steps = (args.steps or run.config["sample"]["steps"]) if init == "etkdg" else args.noise_steps
            start = f"ETKDG+{args.init_sigma or run.config['sample']['init_sigma']:g}A" if init == "etkdg" else "noise"
            methods[f"polydiff {start} ({nfe(args.sampler, steps)} NFE)"] = model(init, steps)
    t0 = time.time()
    results = benchmark(refs, methods, k=args.k)
    print(format_table(results))
    print(f"(total {time.time() - t0:.0f} s; heavy-atom RMSD in Angstrom; coverage = share of molecules with a "
          f"conformer within 0.5 A)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results,
                       "qm9_index": [int(qm9.arrays["index"][m]) for m in test]}, f, indent=2,
                      default=lambda v: float(v) if isinstance(v, np.floating) else str(v))


if __name__ == "__main__":
    main()
