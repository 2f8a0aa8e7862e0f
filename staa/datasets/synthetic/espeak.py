"""Offline speech synthesis through the espeak-ng library bundled by the PyPI package `espeakng-loader`.

espeak-ng keeps internal state between calls (a clip's samples depend on the clips spoken before it
in the process), so `synth_isolated` speaks each utterance in a forked child of a freshly initialised
engine: every clip then comes out bit-identical whatever was synthesised before it, or in which process.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Prosody:
    """espeak-ng's own prosody controls (its units: words/min, 0-100 scales, 10 ms word gaps)."""

    rate: int = 175
    pitch: int = 50
    range: int = 50
    volume: int = 100
    wordgap: int = 0


class Espeak:
    """One espeak-ng engine per process (the library is a process-wide singleton)."""

    _instance: "Espeak | None" = None

    def __new__(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            cls._instance._start()
        return cls._instance

    def _start(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - a dependency of the package
            raise RuntimeError("speech synthesis needs the 'espeakng-loader' package") from err
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data.decode()}")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: the library holds a raw pointer to it
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, _events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(self, text: str, voice: str, prosody: Prosody) -> np.ndarray:
        """Speak `text` with `voice` (e.g. "en-us+f2"); returns float32 samples at `self.sample_rate`."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for name, code in _PARAM.items():
            self._lib.espeak_SetParameter(code, int(getattr(prosody, name)), 0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} (status {status})")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


def synth_isolated(text: str, voice: str, prosody: Prosody, seed: int = 0) -> np.ndarray:
    """`Espeak().synth` in a forked child, so that no state carries over between utterances (POSIX only)."""
    engine = Espeak()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak from the parent's pristine state, hand back the samples, exit at once
        code = 0
        try:
            os.close(read_fd)
            # espeak-ng seeds its own generator from the clock at start-up, and some voices also use rand()
            engine._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            ctypes.CDLL(None).srand(seed)
            data = engine.synth(text, voice, prosody).tobytes()
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"espeak-ng failed to speak {text!r} with voice {voice!r}")
    return np.frombuffer(data, dtype=np.float32).copy()
