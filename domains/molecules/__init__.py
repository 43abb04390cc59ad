"""polydiff.domains.molecules: 3D conformer ensembles for molecular graphs (QM9 or the user's SDF conformers, e3nn,
compared with RDKit ETKDG).

Modules: ``chem`` (RDKit parsing, QM9 XYZ/SMILES matching, featurization, stereo constraints), ``vocab`` (elements and
charges a run embeds), ``facts`` (what a run was trained on; the out-of-distribution guard), ``qm9`` (parse and cache
QM9 from qm9pack, splits), ``userdata`` (SDF conformer sets for ``--data``), ``splits`` (random and scaffold splits by
molecule), ``graph`` (pair tables, zero-CoM noise, stereo features), ``pyg`` (torch-geometric ``Data`` / ``Batch``),
``network`` (the e3nn ``ConformerNet``), ``model`` (centred EDM denoiser, safetensors checkpoints), ``data``
(datasets, collate, fitted facts), ``sampling`` (K conformers per molecule, mirror fix), ``validation`` (geometry
checks and repair), ``screening`` (the rule for sampled conformers), ``metrics`` (heavy-atom RMSD, coverage, ETKDG
baseline), ``ensembles`` (COV/MAT against reference ensembles), ``io`` (SMILES, .smi, SDF in and out), ``preview``
(PNG), ``plugin`` (the polydiff plugin). Heavy imports (torch, torch-geometric, e3nn, RDKit) happen in the modules,
not here.
"""
