"""Offline speech synthesis with libespeak-ng through ctypes (the library and voices ship in ``espeakng-loader``).

espeak-ng keeps global state, so one process holds one ``Espeak`` engine (``engine()``); calls are serialised by a lock.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4
EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """libespeak-ng is missing or refused a request."""


def _locate() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EspeakError("the spoken-digit set needs libespeak-ng: pip install espeakng-loader "
                          "(or pip install 'polydiff[audio]')") from exc
    try:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except RuntimeError as exc:
        raise EspeakError(f"espeakng-loader is installed but incomplete ({exc}); reinstall espeakng-loader") from exc


class Espeak:
    """A synchronous espeak-ng engine that returns waveforms as float32 numpy arrays at ``sample_rate``."""

    def __init__(self) -> None:
        lib_path, data_path = _locate()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EspeakError(f"cannot load libespeak-ng from {lib_path} ({exc}); reinstall espeakng-loader") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with the voice data at {data_path}; reinstall espeakng-loader")
        self.sample_rate = int(rate)
        self.data_path = Path(data_path)
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _collect(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def variants(self) -> list[str]:
        """Names of the voice variants shipped with the data (``en+<variant>``)."""
        return sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir() if p.is_file())

    def synth(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """Speak ``text`` with ``voice`` (e.g. ``en-us+f3``) at ``rate`` words/min and ``pitch`` 0..100: float32 in [-1, 1]."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise EspeakError(f"espeak-ng has no voice {voice!r}; use a language such as 'en-us' plus an "
                                  f"optional '+variant' from Espeak().variants()")
            for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            err = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            if err != EE_OK:
                raise EspeakError(f"espeak_Synth failed (error {err}) for {text!r} with voice {voice!r}")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0


_ENGINE: Espeak | None = None


def engine() -> Espeak:
    """The process-wide espeak-ng engine (created on first use)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    return _ENGINE
