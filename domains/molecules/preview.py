"""PNG previews: a 3D ball-and-stick drawing of a few conformers of a molecule, atoms coloured by element."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rdkit import Chem  # noqa: E402

COLORS = {"H": "#d9d9d9", "C": "#404040", "N": "#3050f8", "O": "#ff0d0d", "F": "#90e050", "P": "#ff8000",
          "S": "#ffff30", "Cl": "#1ff01f", "Br": "#a62929", "I": "#940094", "B": "#ffb5b5", "Si": "#f0c8a0"}
SIZES = {"H": 30, "F": 80, "Cl": 110, "Br": 120, "I": 130, "S": 110, "P": 110}


def conformers_png(mol: Chem.Mol, path: Path | str, max_conformers: int = 4, title: str | None = None) -> Path:
    """Draw up to ``max_conformers`` conformers of ``mol`` side by side (ball and stick) into a PNG file."""
    confs = list(mol.GetConformers())[:max_conformers]
    if not confs:
        raise ValueError("molecule has no conformers to draw")
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    fig = plt.figure(figsize=(3.2 * len(confs), 3.4))
    for k, conf in enumerate(confs):
        pos = conf.GetPositions()
        pos = pos - pos.mean(0)
        ax = fig.add_subplot(1, len(confs), k + 1, projection="3d")
        for i, j in bonds:
            ax.plot(*pos[[i, j]].T, color="#808080", linewidth=1.5)
        ax.scatter(*pos.T, c=[COLORS.get(s, "#ff69b4") for s in symbols], s=[SIZES.get(s, 90) for s in symbols],
                   edgecolors="black", linewidths=0.4, depthshade=False)
        r = max(float(np.abs(pos).max()), 1.0)
        ax.set_xlim(-r, r), ax.set_ylim(-r, r), ax.set_zlim(-r, r)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
        ax.set_title(f"conformer {conf.GetId()}", fontsize=9)
    name = title or (mol.GetProp("_Name") if mol.HasProp("_Name") else "")
    fig.suptitle(f"{name}  {Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))}", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
