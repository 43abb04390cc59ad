"""The audio domain: spoken-digit and folder datasets, log-mel features with Griffin-Lim inversion, a class-conditional
mel U-Net, a digit classifier and DiffWave's SC09 metrics (accuracy, FID, IS, mIS, AM, NDB)."""
