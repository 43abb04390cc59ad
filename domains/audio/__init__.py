"""The audio domain: spoken-digit (espeak-ng), FSDD and folder datasets, log-mel features, a class-conditional mel
U-Net, vocoders from mel to waveform (Griffin-Lim, or learned vocoder runs: HiFi-GAN-lite or DiffWave), a digit
classifier and DiffWave's SC09 metrics (accuracy, FID, IS, mIS, AM, NDB)."""
