"""The molecules domain's config sections: what a run's ``data``, ``network`` and ``sample`` tables may hold."""
from __future__ import annotations

from dataclasses import dataclass, field

QM9_SOURCE = "qm9"
"""``data.source`` of QM9 from qmpack (the default)."""
INITS = ("noise", "etkdg")
SPLITS = ("random", "scaffold")


@dataclass
class Data:
    """The ``data`` section. ``source``: ``qm9`` or the path of an SDF file or folder of SDF files (3D conformers;
    several records of one molecule form its ensemble). QM9: ``subsample`` s keeps the molecules with
    (Index // 20) % s == 0, so the splits stay proportional; ``max_rows`` reads only the first rows of the CSVs; the
    split is QM9's (Index % 20). SDF: ``split`` random (hash of the canonical SMILES) or scaffold (Bemis-Murcko),
    ``fractions`` train / val / test. Both: ``min_heavy`` and ``limit`` (molecules per split, evenly spread)."""

    source: str = QM9_SOURCE
    split: str = "random"
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    subsample: int = 1
    max_rows: int | None = None
    min_heavy: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        from .splits import check_fractions

        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.source == QM9_SOURCE and self.split != "random":
            raise ValueError("split applies to SDF data; QM9 keeps its own split (Index % 20)")
        check_fractions(self.fractions)


@dataclass
class Network:
    """The ``network`` section: the e3nn conformer network (``network.ConformerNet``)."""

    scalars: int = 64
    vectors: int = 16
    layers: int = 4
    lmax: int = 2
    num_rbf: int = 16
    rbf_max: float = 5.0
    noise_dim: int = 64
    edge_hidden: int = 64


@dataclass
class SampleExtras:
    """Molecules' own keys of the ``sample`` section."""

    init: str = "noise"
    """``noise`` (pure diffusion from sigma_max) or ``etkdg`` (SDEdit from ETKDGv3 embeddings noised to init_sigma)."""
    init_sigma: float = 0.3
    """Noise level (Angstrom) the ETKDG starts are noised to."""

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, not {self.init!r}")
