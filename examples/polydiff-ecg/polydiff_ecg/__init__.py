"""polydiff-ecg: a third-party polydiff domain of procedural, class-labelled ECG-like traces."""

__version__ = "0.1.0"
