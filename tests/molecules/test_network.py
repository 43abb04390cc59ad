"""Symmetries of the conformer network and denoiser (float64): rotations, translations, permutations, reflections."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3

from polydiff.domains.molecules.chem import MolGraph, featurize, parse_smiles
from polydiff.domains.molecules.graph import collate, com_free_noise, stereo_features
from polydiff.domains.molecules.model import ConformerDenoiser, load_checkpoint, save_checkpoint
from polydiff.domains.molecules.network import ConformerNet

SMILES = ["C[C@H](O)C(F)N", "C/C=C/C#N", "OC1CC1"]


def _graphs(smiles=SMILES) -> list[MolGraph]:
    return [featurize(parse_smiles(s)) for s in smiles]


_NET: list[ConformerNet] = []


def _setup(seed: int = 0, smiles=SMILES):
    """Graphs, batch, a small float64 network (built once: e3nn code generation is slow) and inputs."""
    if not _NET:
        torch.manual_seed(0)
        _NET.append(ConformerNet(scalars=16, vectors=4, layers=2, lmax=2, num_rbf=8).double().eval())
    torch.manual_seed(seed)
    graphs = _graphs(smiles)
    cond = collate(graphs)
    n = cond["atoms"].shape[0]
    x = torch.randn(n, 3, dtype=torch.float64) * 1.5
    c = torch.full((n,), -0.2, dtype=torch.float64)
    return graphs, cond, _NET[0], x, c


def _flip_stereo(cond):
    out = dict(cond)
    out["chiral_sign"] = -cond["chiral_sign"]
    return out


def test_rotation_translation_equivariance():
    _, cond, net, x, c = _setup()
    R, t = o3.rand_matrix(dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    with torch.no_grad():
        out, out_rt = net(x, c, cond), net(x @ R.T + t, c, cond)
    assert out.abs().max() > 1e-3
    assert torch.allclose(out_rt, out @ R.T, atol=1e-10)
    den = ConformerDenoiser(net).double()
    sigma = torch.full((x.shape[0],), 0.8, dtype=torch.float64)
    with torch.no_grad():
        x0, x0_rt = den(x, sigma, cond), den(x @ R.T + t, sigma, cond)
    assert torch.allclose(x0_rt, x0 @ R.T + t, atol=1e-5)  # core.Denoiser computes in float32


def _permute(graph: MolGraph, perm: np.ndarray) -> MolGraph:
    """Relabel atoms: new atom i is old atom perm[i]."""
    inv = np.argsort(perm)
    return MolGraph(graph.atoms[perm], inv[graph.bonds], graph.bond_types, inv[graph.chiral], graph.chiral_sign,
                    inv[graph.double], graph.double_sign)


def test_permutation_equivariance():
    graphs, cond, net, x, c = _setup()
    rng = np.random.default_rng(1)
    perms = [rng.permutation(g.num_atoms) for g in graphs]
    cond_p = collate([_permute(g, p) for g, p in zip(graphs, perms)])
    offsets = np.cumsum([0] + [g.num_atoms for g in graphs])[:-1]
    full = torch.as_tensor(np.concatenate([p + o for p, o in zip(perms, offsets)]))
    with torch.no_grad():
        out, out_p = net(x, c, cond), net(x[full], c[full], cond_p)
    assert torch.allclose(out_p, out[full], atol=1e-10)


def test_reflection_chirality_aware():
    _, cond, net, x, c = _setup()
    P = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    with torch.no_grad():
        out = net(x, c, cond)
        mirrored_same_tags = net(x @ P, c, cond)
        mirrored_flipped = net(x @ P, c, _flip_stereo(cond))
    # reflecting the geometry together with the requested chirality reflects the output exactly ...
    assert torch.allclose(mirrored_flipped, out @ P, atol=1e-10)
    # ... but with the same chirality request the network is not reflection-equivariant (it sees enantiomers)
    assert (mirrored_same_tags - out @ P).abs().max() > 1e-4


def test_achiral_molecule_is_reflection_equivariant():
    _, cond, net, x, c = _setup(smiles=["CCO", "C=CC#N"])
    assert cond["chiral"].shape[0] == 0
    P = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    with torch.no_grad():
        assert torch.allclose(net(x @ P, c, cond), net(x, c, cond) @ P, atol=1e-10)


def test_stereo_features_are_odd_under_reflection():
    _, cond, _, x, _ = _setup()
    f, f_mirror = stereo_features(x, cond), stereo_features(-x, cond)
    assert torch.allclose(f_mirror[:, 0], -f[:, 0]) and torch.allclose(f_mirror[:, 1], f[:, 1])
    assert f[:, 0].abs().sum() > 0 and f[:, 1].abs().sum() > 0


def test_output_zero_mean_and_bad_input():
    _, cond, net, x, c = _setup()
    with torch.no_grad():
        out = net(x, c, cond)
    for b in range(3):
        assert out[cond["batch"] == b].mean(0).abs().max() < 1e-12
    with pytest.raises(ValueError, match="c_noise"):
        net(x, c[:3], cond)
    with pytest.raises(ValueError, match="collate"):
        net(x, c, None)


def test_com_free_noise():
    cond = collate(_graphs())
    g = torch.Generator().manual_seed(0)
    z = com_free_noise(cond)(torch.zeros(cond["atoms"].shape[0], 3), g)
    for b in range(3):
        assert z[cond["batch"] == b].mean(0).abs().max() < 1e-6
    z2 = com_free_noise(cond)(torch.zeros(cond["atoms"].shape[0], 3), torch.Generator().manual_seed(0))
    assert torch.equal(z, z2)


def test_checkpoint_round_trip(tmp_path):
    _, cond, net, x, c = _setup()
    den = ConformerDenoiser(net)
    save_checkpoint(den, tmp_path)
    den2, cfg = load_checkpoint(tmp_path)
    den2 = den2.double()
    sigma = torch.full((x.shape[0],), 0.5, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(den(x, sigma, cond), den2(x, sigma, cond))
    assert cfg["net"]["lmax"] == 2
    with pytest.raises(FileNotFoundError, match="not a molecules checkpoint"):
        load_checkpoint(tmp_path / "missing")
