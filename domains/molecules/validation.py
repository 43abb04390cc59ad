"""Geometry checks of generated conformers, a guard against out-of-distribution output, and their repair.

A conformer is checked against a reference for its own molecule (``reference``):

- bonds: every bond length (hydrogens included) within ``bond_rel`` (15%) of the reference length;
- angles: every bond angle within ``angle_deg`` (20 degrees) of the reference angle;
- stereo: every specified tetrahedral centre and stereo double bond as tagged on the molecule (the input's stereo),
  measured as in ``chem.stereo_values`` (signed volume of the unit bond vectors, about 0.77 when tetrahedral; signed
  cos of the dihedral) and required above ``stereo_margin`` (0.05), so a flattened centre fails as well as an
  inverted one (raw ETKDG puts the bridgeheads of fused 3/4-ring cages at 0.07);
- clashes: heavy atoms three or more bonds apart (or in different fragments) no closer than ``clash_frac`` (0.65) of
  the sum of their van der Waals radii (RDKit's table: C-C 2.21 A, O-O 2.02 A); closer pairs are governed by the
  bond and angle checks.

The reference lengths and angles are those of an ETKDGv3 embedding of the molecule relaxed with MMFF94 (UFF where
MMFF lacks parameters); where ETKDG cannot embed the molecule, the force field's own ideal values (MMFF r0 and
theta0, else UFF) serve. Measured on 482 QM9 molecules (every fourth of the first 2,000), DFT geometries deviate
from it by at most 12% in bond length (99th percentile 7.5%) and 16 degrees in angle (99th percentile 15), and
their closest such heavy-atom pair is at 0.78 of the van der Waals sum. With these tolerances, all DFT geometries
of another 488 (every fourth from the second row) pass, and of 1,461 raw (not relaxed) ETKDGv3 conformers of them
2.3% fail an angle and none anything else.

``repair`` relaxes one conformer briefly with MMFF94 (else UFF) and checks it again; ``screen`` applies the rule
"check, repair failures, drop what still fails, fall back to ETKDG when nothing is left" to a molecule's conformers.
RDKit is imported inside the functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rdkit import Chem


@dataclass(frozen=True)
class Tolerances:
    """How far a conformer may stray from the reference geometry; see the module docstring for the reasons."""

    bond_rel: float = 0.15
    angle_deg: float = 20.0
    clash_frac: float = 0.65
    stereo_margin: float = 0.05


TOLERANCES = Tolerances()
RESTRAINT_K = 100.0  # kcal/mol/A^2: the wall holding a heavy atom beyond ``restrain`` Angstrom in ``repair``


@dataclass
class Problem:
    """One failed check: its kind (bond, angle, stereo, clash), the atoms, the measured and the reference value."""

    kind: str
    atoms: tuple[int, ...]
    value: float
    expected: float
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Report:
    """The checks of one conformer: its problems (none when ``ok``) and, after ``repair``, how far it moved."""

    conf_id: int
    problems: list[Problem] = field(default_factory=list)
    relaxed: bool = False
    rmsd_moved: float = 0.0
    force_field: str = ""

    @property
    def ok(self) -> bool:
        """True when the conformer passed every check."""
        return not self.problems

    def kinds(self) -> set[str]:
        """The kinds of problem found."""
        return {p.kind for p in self.problems}

    def props(self) -> dict[str, str]:
        """SDF data fields recording the outcome (``polydiff_valid``, ``polydiff_relaxed``, ...)."""
        out = {"polydiff_valid": str(int(self.ok)), "polydiff_relaxed": str(int(self.relaxed))}
        if self.relaxed:
            out["polydiff_relax_rmsd"] = f"{self.rmsd_moved:.3f}"
            out["polydiff_force_field"] = self.force_field
        if self.problems:
            out["polydiff_problems"] = "; ".join(p.message for p in self.problems)
        return out


@dataclass
class Reference:
    """What a molecule's conformers are checked against: reference bond lengths and angles, stereo constraints,
    the heavy-atom pairs checked for clashes with their van der Waals sums, and where the values came from."""

    bonds: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    degrees: np.ndarray
    chiral: np.ndarray
    chiral_sign: np.ndarray
    double: np.ndarray
    double_sign: np.ndarray
    pairs: np.ndarray
    vdw_sum: np.ndarray
    source: str


def _bonds(mol: Chem.Mol) -> np.ndarray:
    """Bonded atom pairs [B, 2]."""
    return np.asarray([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()], dtype=np.int64).reshape(-1, 2)


def _angles(mol: Chem.Mol) -> np.ndarray:
    """Bond angles [A, 3] as (i, centre, k) with i < k."""
    rows = []
    for a in mol.GetAtoms():
        nbrs = sorted(n.GetIdx() for n in a.GetNeighbors())
        rows.extend((i, a.GetIdx(), k) for n, i in enumerate(nbrs) for k in nbrs[n + 1:])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def bond_lengths(pos: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Lengths of the bonds [B, 2] in Angstrom."""
    return np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=-1)


def bond_angles(pos: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Angles (i, centre, k) [A, 3] in degrees."""
    u = pos[angles[:, 0]] - pos[angles[:, 1]]
    w = pos[angles[:, 2]] - pos[angles[:, 1]]
    cos = np.einsum("ij,ij->i", u, w) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1) + 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _clash_pairs(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-atom pairs three or more bonds apart (or unconnected) [P, 2] and their van der Waals sums [P]."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    heavy = np.asarray([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1], dtype=np.int64)
    topo = Chem.GetDistanceMatrix(mol)
    i, j = np.triu_indices(len(heavy), k=1)
    pairs = np.stack([heavy[i], heavy[j]], axis=1)
    pairs = pairs[topo[pairs[:, 0], pairs[:, 1]] >= 3]
    radii = np.asarray([table.GetRvdw(a.GetAtomicNum()) for a in mol.GetAtoms()])
    return pairs, radii[pairs[:, 0]] + radii[pairs[:, 1]]


def _stereo(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tetrahedral and double-bond stereo constraints of the molecule's tags, as ``chem.featurize`` reads them."""
    from rdkit import Chem

    from .chem import _chiral_constraints, _double_constraints

    m = Chem.Mol(mol)
    Chem.AssignStereochemistry(m, cleanIt=True, force=True)
    return (*_chiral_constraints(m), *_double_constraints(m))


def _prepare(mol: Chem.Mol) -> None:
    """Valences and ring information (as sanitization leaves them), for a molecule built without sanitizing: the
    force fields need them."""
    from rdkit import Chem

    mol.UpdatePropertyCache(strict=False)
    Chem.GetSymmSSSR(mol)


def _force_field(mol: Chem.Mol, conf_id: int = -1):
    """(MMFF94 force field for the conformer, "mmff"), else UFF, else (None, "")."""
    from rdkit.Chem import rdForceFieldHelpers as helpers

    if helpers.MMFFHasAllMoleculeParams(mol):
        props = helpers.MMFFGetMoleculeProperties(mol)
        return helpers.MMFFGetMoleculeForceField(mol, props, confId=conf_id), "mmff"
    if helpers.UFFHasAllMoleculeParams(mol):
        return helpers.UFFGetMoleculeForceField(mol, confId=conf_id), "uff"
    return None, ""


def _embedded(mol: Chem.Mol, seed: int) -> tuple[np.ndarray | None, str]:
    """Positions of one ETKDGv3 embedding relaxed with MMFF94 (else UFF), and the force field; (None, "") if ETKDG
    cannot embed the molecule."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    if AllChem.EmbedMolecule(m, params) < 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(m, params) < 0:
            return None, ""
    ff, name = _force_field(m)
    if ff is not None:
        ff.Minimize(maxIts=2000)
    return m.GetConformer().GetPositions(), name


def _ideal_values(mol: Chem.Mol, bonds: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Force-field ideal bond lengths and angles (MMFF94 r0/theta0, else UFF) and the force field's name."""
    from rdkit.Chem import rdForceFieldHelpers as helpers

    props = helpers.MMFFGetMoleculeProperties(mol) if helpers.MMFFHasAllMoleculeParams(mol) else None
    if props is not None:
        lengths = [props.GetMMFFBondStretchParams(mol, int(i), int(j))[2] for i, j in bonds]
        degrees = [props.GetMMFFAngleBendParams(mol, int(i), int(j), int(k))[2] for i, j, k in angles]
        return np.asarray(lengths, dtype=float), np.asarray(degrees, dtype=float), "mmff parameters"
    if not helpers.UFFHasAllMoleculeParams(mol):
        raise ValueError("no reference geometry: ETKDG cannot embed the molecule and neither MMFF94 nor UFF has "
                         "parameters for it")
    lengths = [helpers.GetUFFBondStretchParams(mol, int(i), int(j))[1] for i, j in bonds]
    degrees = [helpers.GetUFFAngleBendParams(mol, int(i), int(j), int(k))[1] for i, j, k in angles]
    return np.asarray(lengths, dtype=float), np.asarray(degrees, dtype=float), "uff parameters"


def reference(mol: Chem.Mol, seed: int = 0, source: str = "geometry") -> Reference:
    """The reference a molecule's conformers are checked against (computed once per molecule).

    ``source="geometry"``: lengths and angles of an MMFF-relaxed ETKDGv3 embedding (the force-field parameters
    when the molecule cannot be embedded); ``"parameters"``: the force field's ideal values directly.
    """
    if source not in ("geometry", "parameters"):
        raise ValueError(f"unknown reference source {source!r}; use 'geometry' or 'parameters'")
    _prepare(mol)
    bonds, angles = _bonds(mol), _angles(mol)
    pos, ff = _embedded(mol, seed) if source == "geometry" else (None, "")
    if pos is not None:
        lengths, degrees, label = bond_lengths(pos, bonds), bond_angles(pos, angles), f"{ff or 'etkdg'} geometry"
    else:
        lengths, degrees, label = _ideal_values(mol, bonds, angles)
    chiral, chiral_sign, double, double_sign = _stereo(mol)
    pairs, vdw_sum = _clash_pairs(mol)
    return Reference(bonds, lengths, angles, degrees, chiral, chiral_sign, double, double_sign, pairs, vdw_sum, label)


def _bond_problems(pos: np.ndarray, ref: Reference, tol: Tolerances) -> list[Problem]:
    """Bonds whose length strays more than ``bond_rel`` from the reference."""
    r = bond_lengths(pos, ref.bonds)
    bad = np.nonzero(np.abs(r - ref.lengths) > tol.bond_rel * ref.lengths)[0]
    return [Problem("bond", (int(ref.bonds[b, 0]), int(ref.bonds[b, 1])), float(r[b]), float(ref.lengths[b]),
                    f"bond {ref.bonds[b, 0]}-{ref.bonds[b, 1]}: {r[b]:.3f} A, reference {ref.lengths[b]:.3f} A "
                    f"(+-{100 * tol.bond_rel:.0f}%)") for b in bad]


def _angle_problems(pos: np.ndarray, ref: Reference, tol: Tolerances) -> list[Problem]:
    """Angles that stray more than ``angle_deg`` from the reference."""
    theta = bond_angles(pos, ref.angles)
    bad = np.nonzero(np.abs(theta - ref.degrees) > tol.angle_deg)[0]
    return [Problem("angle", tuple(int(x) for x in ref.angles[a]), float(theta[a]), float(ref.degrees[a]),
                    f"angle {'-'.join(map(str, ref.angles[a]))}: {theta[a]:.1f} deg, reference {ref.degrees[a]:.1f} "
                    f"deg (+-{tol.angle_deg:g})") for a in bad]


def _stereo_problems(pos: np.ndarray, ref: Reference, tol: Tolerances) -> list[Problem]:
    """Stereo centres and double bonds that are inverted or flattened relative to the molecule's tags."""
    from .chem import MolGraph, stereo_values

    graph = MolGraph(np.zeros((len(pos), 0), dtype=np.int8), ref.bonds, np.zeros(0, dtype=np.int8), ref.chiral,
                     ref.chiral_sign, ref.double, ref.double_sign)
    chi, dbl = stereo_values(pos, graph)
    out = [Problem("stereo", (int(ref.chiral[c, 0]),), float(chi[c]), 1.0,
                   f"stereo centre {ref.chiral[c, 0]}: {'inverted' if chi[c] < 0 else 'flattened'} "
                   f"(signed volume {chi[c]:.2f})") for c in np.nonzero(chi <= tol.stereo_margin)[0]]
    out += [Problem("stereo", (int(ref.double[d, 1]), int(ref.double[d, 2])), float(dbl[d]), 1.0,
                    f"double bond {ref.double[d, 1]}={ref.double[d, 2]}: "
                    f"{'cis/trans swapped' if dbl[d] < 0 else 'twisted'} (signed cos {dbl[d]:.2f})")
            for d in np.nonzero(dbl <= tol.stereo_margin)[0]]
    return out


def _clash_problems(pos: np.ndarray, ref: Reference, tol: Tolerances) -> list[Problem]:
    """Non-bonded heavy-atom pairs closer than ``clash_frac`` of their van der Waals sum."""
    d = bond_lengths(pos, ref.pairs)
    limit = tol.clash_frac * ref.vdw_sum
    return [Problem("clash", (int(ref.pairs[p, 0]), int(ref.pairs[p, 1])), float(d[p]), float(limit[p]),
                    f"clash {ref.pairs[p, 0]}-{ref.pairs[p, 1]}: {d[p]:.2f} A apart, at least {limit[p]:.2f} A "
                    f"({tol.clash_frac:g} x van der Waals sum)") for p in np.nonzero(d < limit)[0]]


def validate(mol: Chem.Mol, conf_id: int = -1, *, ref: Reference | None = None,
             tol: Tolerances = TOLERANCES) -> Report:
    """Check one conformer's bonds, angles, stereo and clashes (``ref`` from ``reference(mol)``, computed if None)."""
    ref = ref if ref is not None else reference(mol)
    conf = mol.GetConformer(conf_id)
    pos = conf.GetPositions()
    problems = (_bond_problems(pos, ref, tol) + _angle_problems(pos, ref, tol) + _stereo_problems(pos, ref, tol)
                + _clash_problems(pos, ref, tol))
    return Report(conf.GetId(), problems)


def check_conformers(mol: Chem.Mol, *, ref: Reference | None = None, tol: Tolerances = TOLERANCES) -> list[Report]:
    """One ``Report`` per conformer of ``mol``, in conformer order (the reference is computed once)."""
    ref = ref if ref is not None else reference(mol)
    return [validate(mol, c.GetId(), ref=ref, tol=tol) for c in mol.GetConformers()]


def aligned_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of two coordinate sets [N, 3] of the same atoms after the optimal rotation and translation (Kabsch)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    s[-1] *= np.sign(np.linalg.det(u @ vt))
    return float(np.sqrt(max(0.0, ((a ** 2).sum() + (b ** 2).sum() - 2 * s.sum()) / len(a))))


def _relax(mol: Chem.Mol, conf_id: int, max_iters: int, free_heavy: bool, restrain: float | None) -> str:
    """Minimise one conformer in place; heavy atoms fixed, or free (within ``restrain`` Angstrom if given). Returns
    the force field used ("" when none covers the molecule)."""
    ff, name = _force_field(mol, conf_id)
    if ff is None:
        return ""
    for a in mol.GetAtoms():
        if a.GetAtomicNum() == 1:
            continue
        if not free_heavy:
            ff.AddFixedPoint(a.GetIdx())
        elif restrain is not None:
            add = ff.MMFFAddPositionConstraint if name == "mmff" else ff.UFFAddPositionConstraint
            add(a.GetIdx(), restrain, RESTRAINT_K)
    ff.Initialize()
    ff.Minimize(maxIts=max_iters)
    return name


def repair(mol: Chem.Mol, conf_id: int = -1, max_iters: int = 200, *, restrain: float | None = 0.5,
           ref: Reference | None = None, tol: Tolerances = TOLERANCES) -> Report:
    """Relax one conformer in place with MMFF94 (else UFF), at most ``max_iters`` steps a stage, and check it again.

    First only the hydrogens move (the heavy-atom geometry, which the RMSD metrics score, is kept); if that does not
    pass, all atoms move, each heavy atom freely up to ``restrain`` Angstrom from where it was and held back beyond by
    a flat-bottomed wall (None: unrestrained), so a bond or an angle is fixed without the force field rearranging
    torsions. The report says it was relaxed, with which force field and how far the heavy atoms moved (aligned
    RMSD). A molecule neither force field covers is left as it was (``relaxed`` False).
    """
    ref = ref if ref is not None else reference(mol)
    _prepare(mol)
    conf = mol.GetConformer(conf_id)
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    before = conf.GetPositions()
    name = _relax(mol, conf.GetId(), max_iters, free_heavy=False, restrain=restrain)
    if not name:
        return validate(mol, conf.GetId(), ref=ref, tol=tol)
    report = validate(mol, conf.GetId(), ref=ref, tol=tol)
    if not report.ok:
        for i, p in enumerate(before):
            conf.SetAtomPosition(i, p.tolist())
        _relax(mol, conf.GetId(), max_iters, free_heavy=True, restrain=restrain)
        report = validate(mol, conf.GetId(), ref=ref, tol=tol)
    report.relaxed, report.force_field = True, name
    report.rmsd_moved = aligned_rmsd(before[heavy], conf.GetPositions()[heavy])
    return report


@dataclass
class Screened:
    """The outcome of ``screen``: the conformers kept (relaxed where repaired, or ETKDG's on fallback), one report
    per kept conformer, how many kept ones were relaxed, how many were dropped, and a warning on ETKDG fallback."""

    mol: Chem.Mol
    reports: list[Report]
    n_relaxed: int
    n_dropped: int
    fallback: bool = False
    warning: str | None = None

    def conf_props(self) -> list[dict[str, str]]:
        """SDF data fields per kept conformer (``io.write_sdf``'s ``conf_props``)."""
        source = {"polydiff_source": "etkdg_fallback" if self.fallback else "model"}
        return [{**r.props(), **source} for r in self.reports]


def screen(mol: Chem.Mol, *, repair_failed: bool = True, max_iters: int = 200, restrain: float | None = 0.5,
           fallback: bool = True, seed: int = 0, tol: Tolerances = TOLERANCES) -> Screened:
    """Check every conformer, relax the failing ones (``repair``), drop those still failing; when none is left, fall
    back to as many ETKDGv3 conformers (checked, kept whatever the outcome) with a warning. ``mol`` is not changed."""
    from rdkit import Chem

    from .metrics import etkdg_conformers

    work = Chem.Mol(mol)
    ref = reference(work, seed)
    reports = check_conformers(work, ref=ref, tol=tol)
    if repair_failed:
        reports = [r if r.ok else repair(work, r.conf_id, max_iters, restrain=restrain, ref=ref, tol=tol)
                   for r in reports]
    kept = [r for r in reports if r.ok]
    n_relaxed = sum(r.relaxed for r in kept)
    out = Chem.Mol(work)
    out.RemoveAllConformers()
    for r in kept:
        out.AddConformer(Chem.Conformer(work.GetConformer(r.conf_id)), assignId=True)
    kept = [Report(i, r.problems, r.relaxed, r.rmsd_moved, r.force_field) for i, r in enumerate(kept)]
    if kept or not fallback or not reports:
        return Screened(out, kept, n_relaxed, len(reports) - len(kept))
    etkdg = etkdg_conformers(work, len(reports), seed)
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"
    warning = (f"{name}: none of {len(reports)} conformers passed the geometry checks; "
               f"using {etkdg.GetNumConformers()} ETKDGv3 conformers instead")
    return Screened(etkdg, check_conformers(etkdg, ref=ref, tol=tol), 0, len(reports), True, warning)
