"""What the call loop needs from a speech recogniser.

Two shapes exist in practice: batch recognisers that take a whole utterance
(Whisper) and streaming ones that take frames and give partial results (Vosk).
Both give a final ``Transcript``; the loop does not care which it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class RecognizerError(RuntimeError):
    """Recognition failed; the call loop apologises and transfers the caller."""


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard in one utterance."""

    text: str
    audio_ms: float  # duration of the audio recognised
    processing_ms: float  # wall time spent recognising it
    language: str = "ja"
    confidence: float | None = None  # backend-specific, if it has one
    alternatives: tuple[str, ...] = ()  # other hypotheses, best first (n-best), if any
    # For each hypothesis (text and alternatives): how probable the audio makes it with no
    # vocabulary hint (Whisper: mean token probability of the text forced on the same
    # encoder output). A hint can make its own words fluent; this measures the audio only.
    unprompted: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Recognizer(Protocol):
    """Whole-utterance recognition. ``transcribe`` must not block the event loop."""

    name: str
    sample_rate: int  # rate of the int16 mono samples it expects

    async def transcribe(self, samples: np.ndarray) -> Transcript: ...


@runtime_checkable
class RecognizerStream(Protocol):
    """One utterance fed frame by frame."""

    async def accept(self, samples: np.ndarray) -> str | None:
        """Feed int16 samples; returns the current partial text when it changed."""
        ...

    async def finish(self) -> Transcript: ...


@runtime_checkable
class StreamingRecognizer(Protocol):
    name: str
    sample_rate: int

    def stream(self) -> RecognizerStream: ...
