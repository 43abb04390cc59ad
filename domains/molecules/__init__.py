"""polydiff.domains.molecules: 3D conformer ensembles for molecular graphs (QM9, e3nn, compared with RDKit ETKDG).

Modules: ``chem`` (RDKit parsing, QM9 XYZ/SMILES matching, featurization, stereo constraints), ``qm9`` (parse and
cache QM9 from qm9pack, splits), ``graph`` (batching, zero-CoM noise, stereo features), ``network`` (the e3nn
``ConformerNet``), ``model`` (centred EDM denoiser, safetensors checkpoints), ``data`` (training dataset and collate),
``sampling`` (K conformers per molecule, mirror fix), ``metrics`` (heavy-atom RMSD, coverage, ETKDG baseline),
``io`` (SMILES, .smi, SDF in and out), ``preview`` (PNG), ``plugin`` / ``cli`` (the polydiff plugin).
Heavy imports (torch, e3nn, RDKit) happen in the modules, not here.
"""
