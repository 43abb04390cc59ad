"""The shape of a trace: sampling rate, length and duration (no imports, so the declaration stays light)."""

FS = 64
"""Sampling rate in Hz."""
LENGTH = 256
"""Samples per trace (4 s at ``FS``)."""
DURATION = LENGTH / FS

SYNTHETIC = "synthetic"
"""The ``data.source`` of the procedural traces."""
