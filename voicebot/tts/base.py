"""What the call loop needs from a speech synthesiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class SynthesisError(RuntimeError):
    """Synthesis failed; the call loop apologises (from cache) and transfers the caller."""


@dataclass(frozen=True)
class Speech:
    """Synthesised audio: int16 mono samples at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate


@runtime_checkable
class Synthesizer(Protocol):
    """Text to speech. ``synthesize`` must not block the event loop."""

    engine: str  # e.g. "kokoro", "pyttsx3"
    voice: str  # engine-specific voice id, e.g. "jf_alpha"
    sample_rate: int

    async def synthesize(self, text: str) -> Speech: ...
