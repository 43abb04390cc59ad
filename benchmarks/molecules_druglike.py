"""Drug-like conformer ensembles built offline, and COV/MAT of ETKDGv3, ETKDG + MMFF and polydiff on them (issue 23
item 5; not run by CI).

No GEOM download is possible, so this builds a reproducible stand-in the way GEOM built its ensembles (CREST on
GFN2-xTB), with what installs from the package index:

- molecules: the MOSES test split (its SMILES ship inside the ``molsets`` wheel), filtered to at most
  ``--max-heavy`` heavy atoms and ``--max-rotatable`` rotatable bonds and taken in the order of a SHA-1 of the SMILES
  (deterministic, independent of file order); training molecules the same way from MOSES train;
- reference ensemble per molecule: ``--embeddings`` ETKDGv3 conformers (seeded) -> MMFF94 minimum -> duplicates
  pruned (heavy-atom RMSD < ``--rmsd``) -> GFN2-xTB minimum (``tblite``, gas phase, L-BFGS to a largest gradient
  component of ``--gtol`` Eh/bohr) -> conformers whose bonds changed dropped -> energy window ``--ewin`` kcal/mol
  above the lowest (CREST's default 6) -> duplicates pruned again (CREST's 0.125 A), lowest energy first.
  Each record carries ``energy_hartree``, ``rel_energy_kcal`` and ``energy_method``. A molecule given without
  stereo is fixed to one stereoisomer first, so its ensemble does not mix them; ``--method mmff`` stops at MMFF94
  (a cheaper recipe for training data);
- evaluation: ``ensembles.ensemble_benchmark`` (COV-R, MAT-R, COV-P, MAT-P, K = 2x the ensemble size, threshold
  0.75 A above 9 heavy atoms) for ETKDGv3, ETKDGv3 + MMFF94 and, given ``--run``, polydiff from ETKDG starts and from
  noise (``--noise-steps`` Heun intervals). The methods draw with ``--eval-seed``, not the recipe's seed, so ETKDG
  + MMFF does not restart from the very embeddings the references were minimised from (it still shares their first
  stage, MMFF, which flatters it: say so next to its row).

Everything is cached under ``$POLYDIFF_CACHE/molecules/druglike/<recipe>/`` (``<recipe>`` = a hash of the settings
that change the data), one SDF per molecule, so a stopped run resumes where it stopped; ``checksums`` writes the
SHA-256 of every output (and ``--expect FILE`` compares with a committed list).

    pip install --no-deps molsets==0.3.1 tblite==0.8.0   # only molsets' data files are read; tblite needs cffi
    python benchmarks/molecules_druglike.py references --split test --n 3 --embeddings 8   # a check, minutes
    python benchmarks/molecules_druglike.py references --split test --n 100 --workers 2      # the benchmark's set
    python benchmarks/molecules_druglike.py train-data --n 1000 --method mmff               # an SDF for --data
    python benchmarks/molecules_druglike.py evaluate --n 100 --run RUN --json results.json
    python benchmarks/molecules_druglike.py checksums --write benchmarks/molecules_druglike.sha256
    python benchmarks/molecules_druglike.py checksums --method mmff --write benchmarks/molecules_druglike_train.sha256
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HARTREE_KCAL = 627.509474
BOHR_PER_ANGSTROM = 1.8897261246
EMBED_SECONDS = 60
"""RDKit's time limit for one molecule's embeddings: a molecule it cannot place (a cage whose stereo ETKDG keeps
failing) keeps what was embedded by then instead of hanging the build. Added after the test references were built
(``checksums --expect benchmarks/molecules_druglike.sha256`` says whether they still come out the same)."""


@dataclass(frozen=True)
class Recipe:
    """The settings that change the reference data (their hash names the cache folder)."""

    max_heavy: int = 30
    max_rotatable: int = 8
    embeddings: int = 30
    seed: int = 0
    rmsd: float = 0.125
    ewin: float = 6.0
    gtol: float = 1e-3
    max_iters: int = 500
    method: str = "gfn2"

    def key(self) -> str:
        """A short stable name of the recipe."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def cache_root() -> Path:
    """``$POLYDIFF_CACHE/molecules/druglike`` (default ``~/.cache/polydiff/...``), outside git."""
    return Path(os.environ.get("POLYDIFF_CACHE", Path.home() / ".cache" / "polydiff")) / "molecules" / "druglike"


def moses_file(split: str) -> Path:
    """MOSES ``train``/``test`` SMILES inside the installed ``molsets`` wheel (its package is not imported)."""
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("molsets is not installed: pip install --no-deps molsets==0.3.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data" / f"{split}.csv.gz"
    if not path.is_file():
        sys.exit(f"{path} is missing: the molsets installation is incomplete")
    return path


def one_stereoisomer(mol):
    """The molecule with every unassigned stereo centre and double bond fixed to RDKit's first enumerated choice,
    so that all of its reference conformers are of one stereoisomer."""
    from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

    options = StereoEnumerationOptions(onlyUnassigned=True, unique=True)
    return next(iter(EnumerateStereoisomers(mol, options=options)), mol)


def pick_molecules(split: str, n: int, recipe: Recipe, offset: int = 0) -> list[tuple[str, str]]:
    """(name, SMILES of one stereoisomer) of ``n`` MOSES molecules of ``split`` passing the size filters, in SHA-1
    order of the MOSES SMILES; names are ``<split>_<first 10 hex of the hash>``."""
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    with gzip.open(moses_file(split), "rt") as f:
        smiles = [line.strip().split(",")[0] for line in f][1:]
    ranked = sorted((hashlib.sha1(s.encode()).hexdigest(), s) for s in smiles if s)
    out = []
    for digest, s in ranked:
        mol = Chem.MolFromSmiles(s)
        if mol is None or mol.GetNumHeavyAtoms() > recipe.max_heavy:
            continue
        if rdMolDescriptors.CalcNumRotatableBonds(mol) > recipe.max_rotatable:
            continue
        out.append((f"{split}_{digest[:10]}", Chem.MolToSmiles(one_stereoisomer(mol))))
        if len(out) >= n + offset:
            break
    return out[offset:]


def embed_mmff(smiles: str, recipe: Recipe):
    """ETKDGv3 embeddings of the molecule minimised with MMFF94 (explicit hydrogens), with their MMFF energies (none
    when ETKDG cannot embed it even from random coordinates)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from polydiff.domains.molecules.metrics import rdkit_seed

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = rdkit_seed(recipe.seed)
    params.numThreads = 1
    params.timeout = EMBED_SECONDS
    if not AllChem.EmbedMultipleConfs(mol, recipe.embeddings, params):
        params.useRandomCoords = True  # RDKit's remedy for molecules the default embedding cannot place
        if not AllChem.EmbedMultipleConfs(mol, recipe.embeddings, params):
            return mol, []
    try:
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000)
    except ValueError:  # an embedding cut short by the time limit can leave a conformer MMFF refuses
        return mol, []
    return mol, [e for _, e in results]


def prune(mol, order: list[int], threshold: float) -> list[int]:
    """Conformer ids in ``order`` with those within ``threshold`` A heavy-atom RMSD (symmetry-aware) of an earlier
    kept one left out."""
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    heavy = Chem.RemoveHs(mol)
    kept: list[int] = []
    for cid in order:
        if all(rdMolAlign.GetBestRMS(heavy, heavy, k, cid, maxMatches=1000) >= threshold for k in kept):
            kept.append(cid)
    return kept


def bonds_of(numbers: np.ndarray, pos: np.ndarray, charge: int) -> set[tuple[int, int]]:
    """Atom pairs bonded in a geometry (RDKit's connectivity from covalent radii)."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    rw = Chem.RWMol()
    for z in numbers:
        rw.AddAtom(Chem.Atom(int(z)))
    conf = Chem.Conformer(len(numbers))
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, p.tolist())
    rw.AddConformer(conf, assignId=True)
    rdDetermineBonds.DetermineConnectivity(rw, charge=charge)
    return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in rw.GetBonds()}


def gfn2_minimum(numbers: np.ndarray, pos: np.ndarray, charge: int, recipe: Recipe) -> tuple[np.ndarray, float, int]:
    """GFN2-xTB minimum near ``pos`` (Angstrom): (positions, energy in Hartree, energy evaluations)."""
    from scipy.optimize import minimize
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", numbers, pos * BOHR_PER_ANGSTROM, charge=charge)
    calc.set("verbosity", 0)
    calls = [0]

    def energy(x: np.ndarray) -> tuple[float, np.ndarray]:
        calc.update(x.reshape(-1, 3))
        res = calc.singlepoint()
        calls[0] += 1
        return float(res.get("energy")), res.get("gradient").ravel()

    out = minimize(energy, (pos * BOHR_PER_ANGSTROM).ravel(), jac=True, method="L-BFGS-B",
                   options={"gtol": recipe.gtol, "maxiter": recipe.max_iters})
    return out.x.reshape(-1, 3) / BOHR_PER_ANGSTROM, float(out.fun), calls[0]


def reference_ensemble(name: str, smiles: str, recipe: Recipe) -> tuple[object, dict]:
    """The molecule with its reference conformers (lowest energy first, SDF properties set) and what it cost."""
    from rdkit import Chem

    t0 = time.perf_counter()
    mol, mmff = embed_mmff(smiles, recipe)
    ids = [c.GetId() for c in mol.GetConformers()]
    starts = prune(mol, sorted(ids, key=lambda i: mmff[ids.index(i)]), recipe.rmsd)
    stats = {"name": name, "smiles": smiles, "atoms": mol.GetNumAtoms(), "heavy": mol.GetNumHeavyAtoms(),
             "embedded": len(ids), "after_mmff_prune": len(starts)}
    numbers = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()])
    charge = Chem.GetFormalCharge(mol)
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}
    minima, calls, changed, failed = [], 0, 0, 0
    for cid in starts:
        pos = mol.GetConformer(cid).GetPositions()
        energy = mmff[ids.index(cid)] / HARTREE_KCAL
        if recipe.method == "gfn2":
            try:
                pos, energy, n = gfn2_minimum(numbers, pos, charge, recipe)
                calls += n
            except Exception:  # an SCF that does not converge drops this conformer only
                failed += 1
                continue
            if bonds_of(numbers, pos, charge) != bonds:
                changed += 1
                continue
        minima.append((energy, pos))
    stats.update({"energy_calls": calls, "topology_changed": changed, "scf_failed": failed})
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    if minima:
        lowest = min(e for e, _ in minima)
        window = sorted(((e, p) for e, p in minima if (e - lowest) * HARTREE_KCAL <= recipe.ewin), key=lambda t: t[0])
        for e, p in window:
            conf = Chem.Conformer(len(numbers))
            for i, x in enumerate(p):
                conf.SetAtomPosition(i, x.tolist())
            out.AddConformer(conf, assignId=True)
        energies = [e for e, _ in window]
        kept = prune(out, list(range(len(window))), recipe.rmsd)
        final = Chem.Mol(out)
        final.RemoveAllConformers()
        for cid in kept:
            final.AddConformer(Chem.Conformer(out.GetConformer(cid)), assignId=True)
        final.SetProp("_energies", json.dumps([energies[c] for c in kept]))
        out = final
    stats.update({"conformers": out.GetNumConformers(), "seconds": time.perf_counter() - t0})
    out.SetProp("_Name", name)
    return out, stats


def write_ensemble(mol, path: Path, method: str) -> None:
    """One record per conformer, named after the molecule, with its energies; written atomically."""
    from rdkit import Chem

    energies = json.loads(mol.GetProp("_energies")) if mol.HasProp("_energies") else []
    tmp = path.with_suffix(".tmp")
    with Chem.SDWriter(str(tmp)) as w:
        for k, conf in enumerate(mol.GetConformers()):
            m = Chem.Mol(mol)
            m.SetProp("energy_hartree", f"{energies[k]:.8f}")
            m.SetProp("rel_energy_kcal", f"{(energies[k] - energies[0]) * HARTREE_KCAL:.3f}")
            m.SetProp("energy_method", method)
            w.write(m, confId=conf.GetId())
    os.replace(tmp, path)


def _build_one(job: tuple[str, str, Recipe, str]) -> dict:
    """Worker: build and write one molecule's ensemble (one thread) unless it is cached; returns its stats."""
    name, smiles, recipe, folder = job
    path = Path(folder) / f"{name}.sdf"
    log = path.with_suffix(".json")
    if path.is_file() and log.is_file():
        return json.loads(log.read_text())
    mol, stats = reference_ensemble(name, smiles, recipe)
    write_ensemble(mol, path, recipe.method)
    log.write_text(json.dumps(stats))
    return stats


def build(split: str, n: int, recipe: Recipe, workers: int, offset: int = 0) -> Path:
    """Reference ensembles of ``n`` molecules of ``split`` into the cache; prints one line per molecule."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = cache_root() / recipe.key() / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    jobs = [(name, smiles, recipe, str(folder)) for name, smiles in pick_molecules(split, n, recipe, offset)]
    t0 = time.time()
    if workers > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            results = pool.imap(_build_one, jobs)
            for stats in results:
                _report(stats)
    else:
        for job in jobs:
            _report(_build_one(job))
    print(f"{len(jobs)} molecules in {time.time() - t0:.0f} s -> {folder}")
    return folder


def _report(stats: dict) -> None:
    print(f"{stats['name']} {stats['smiles']}: {stats['heavy']} heavy atoms, {stats['embedded']} embedded, "
          f"{stats['after_mmff_prune']} after MMFF pruning, {stats['conformers']} kept "
          f"({stats['topology_changed']} changed bonds, {stats['scf_failed']} SCF failures), "
          f"{stats['seconds']:.1f} s, {stats['energy_calls']} GFN2 calls", flush=True)


def load_references(split: str, n: int, recipe: Recipe) -> list:
    """The cached ensembles of the first ``n`` molecules of ``split`` (they must have been built)."""
    from polydiff.domains.molecules.io import read_sdf_groups

    folder = cache_root() / recipe.key() / split
    refs = []
    for name, _ in pick_molecules(split, n, recipe):
        path = folder / f"{name}.sdf"
        if not path.is_file():
            sys.exit(f"{path} is missing: run the references stage first")
        items = [i for i in read_sdf_groups(path) if i.mol is not None]
        refs.extend(i.mol for i in items if i.mol.GetNumConformers())
    return refs


def etkdg_mmff_method(seed: int = 0):
    """ETKDGv3 conformers minimised with MMFF94, as an ``ensemble_benchmark`` method."""
    from rdkit.Chem import AllChem

    from polydiff.domains.molecules.metrics import etkdg_conformers

    def method(mols, k):
        out = []
        for m in mols:
            confs = etkdg_conformers(m, k, seed)
            AllChem.MMFFOptimizeMoleculeConfs(confs, numThreads=1, maxIters=2000)
            out.append(confs)
        return out

    return method


def polydiff_method(run, init: str, steps: int, seed: int, validate: bool):
    """A polydiff run as an ``ensemble_benchmark`` method (molecules it refuses come back without conformers)."""
    import torch
    from rdkit import Chem

    from polydiff.domains.molecules.io import MolInput, unique_names

    generator = torch.Generator(device=run.device).manual_seed(seed)

    def method(mols, k):
        names = unique_names([m.GetProp("_Name") if m.HasProp("_Name") else str(i) for i, m in enumerate(mols)])
        inputs = [MolInput(name, m) for name, m in zip(names, mols)]
        request = run.request(k, steps=steps, generator=generator, init=init, no_validate=not validate)
        samples = run.domain.generate(run, request, inputs)
        made = dict(samples["molecules"])
        method.checks["conformers"] += k * len(mols)
        for key in ("n_relaxed", "n_dropped"):
            method.checks[key] += int(samples.meta.get(key, 0))
        method.checks["fallbacks"] += len(samples.meta.get("fallbacks", []))
        return [made.get(name, Chem.Mol(m)) for name, m in zip(names, mols)]

    method.checks = {"conformers": 0, "n_relaxed": 0, "n_dropped": 0, "fallbacks": 0}
    """What the output checks did: conformers asked for, relaxed by the force field, dropped; ETKDG fallbacks."""
    return method


def evaluate(args: argparse.Namespace, recipe: Recipe) -> None:
    """The COV/MAT table of the cached test ensembles."""
    from polydiff.domains.molecules.ensembles import ensemble_benchmark, format_ensemble_table
    from polydiff.domains.molecules.metrics import etkdg_method

    refs = load_references("test", args.n, recipe)
    methods = {"etkdg": etkdg_method(args.eval_seed), "etkdg+mmff": etkdg_mmff_method(args.eval_seed)}
    if args.run:
        from polydiff.plugins.manager import get_manager
        from polydiff.plugins.runs import load_run
        from polydiff.plugins.runtime import set_threads

        set_threads(args.threads)
        run = load_run(get_manager().domain("molecules"), None if args.run == "shipped" else args.run, args.device)
        steps = args.steps or run.config["sample"]["steps"]
        validate = not args.no_validate
        methods[f"polydiff etkdg ({steps} steps)"] = polydiff_method(run, "etkdg", steps, args.eval_seed, validate)
        methods[f"polydiff noise ({args.noise_steps} steps)"] = polydiff_method(run, "noise", args.noise_steps,
                                                                                args.eval_seed, validate)
    t0 = time.time()
    results = ensemble_benchmark(refs, methods, factor=args.k_factor)
    print(f"MOSES test, {len(refs)} molecules, {sum(r.GetNumConformers() for r in refs)} reference conformers "
          f"(recipe {recipe.key()}), K = {args.k_factor}x ensemble size")
    print(format_ensemble_table(results))
    for name, method in methods.items():
        if hasattr(method, "checks"):
            results[name]["checks"] = method.checks
            c = method.checks
            print(f"{name}: {c['n_relaxed']} of {c['conformers']} conformers relaxed by the checks, {c['n_dropped']} "
                  f"dropped, {c['fallbacks']} molecules fell back to ETKDG")
    print(f"(total {time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"recipe": asdict(recipe), "n": len(refs), "results": results},
                                              indent=2, default=float))


def train_data(args: argparse.Namespace, recipe: Recipe) -> None:
    """The recipe on MOSES training molecules, gathered into one SDF for ``polydiff molecules train --data``."""
    folder = build("train", args.n, recipe, args.workers, args.offset)
    out = folder.parent / f"train_{args.n}.sdf"
    with open(out, "wb") as f:
        for name, _ in pick_molecules("train", args.n, recipe, args.offset):
            f.write((folder / f"{name}.sdf").read_bytes())
    print(f"training set -> {out} (polydiff molecules train --data {out})")


def checksums(args: argparse.Namespace, recipe: Recipe) -> None:
    """SHA-256 of every cached output (sha256sum format), written to the cache and ``--write``; ``--expect`` checks."""
    root = cache_root() / recipe.key()
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}"
             for p in sorted(root.rglob("*.sdf"))]
    text = "\n".join(lines) + "\n"
    (root / "checksums.sha256").write_text(text)
    if args.write:
        Path(args.write).write_text(f"# recipe {recipe.key()}: {json.dumps(asdict(recipe), sort_keys=True)}\n" + text)
    print(text, end="")
    if args.expect:
        expected = {line for line in Path(args.expect).read_text().splitlines() if line and not line.startswith("#")}
        missing = expected - set(lines)
        print(f"{len(expected) - len(missing)} of {len(expected)} checksums match")
        if missing:
            sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=("molecules", "references", "train-data", "evaluate", "checksums"))
    p.add_argument("--split", default="test", choices=("test", "train"), help="MOSES split (references stage)")
    p.add_argument("--n", type=int, default=100, help="molecules")
    p.add_argument("--offset", type=int, default=0, help="skip this many molecules first (train-data in chunks)")
    p.add_argument("--workers", type=int, default=1, help="processes, one thread each")
    for f in Recipe.__dataclass_fields__.values():
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                       help=f"recipe: {f.name} (default {f.default})")
    p.add_argument("--run", default=None, help="evaluate: a polydiff run folder, or shipped")
    p.add_argument("--steps", type=int, default=None, help="evaluate: Heun intervals from ETKDG starts")
    p.add_argument("--noise-steps", type=int, default=25, help="evaluate: Heun intervals from noise")
    p.add_argument("--k-factor", type=int, default=2)
    p.add_argument("--eval-seed", type=int, default=1,
                   help="evaluate: seed of the methods (not the recipe's, whose embeddings made the references)")
    p.add_argument("--no-validate", action="store_true", help="evaluate: score raw polydiff conformers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--write", default=None, help="checksums: also write the list here (e.g. into benchmarks/)")
    p.add_argument("--expect", default=None, help="checksums: compare with this list")
    args = p.parse_args()
    recipe = Recipe(**{f: getattr(args, f) for f in Recipe.__dataclass_fields__})
    if args.stage == "molecules":
        for name, smiles in pick_molecules(args.split, args.n, recipe, args.offset):
            print(name, smiles)
    elif args.stage == "references":
        build(args.split, args.n, recipe, args.workers, args.offset)
    elif args.stage == "train-data":
        train_data(args, recipe)
    elif args.stage == "evaluate":
        evaluate(args, recipe)
    else:
        checksums(args, recipe)


if __name__ == "__main__":
    main()
