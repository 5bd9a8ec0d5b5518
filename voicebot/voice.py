"""The bot's voice at a transport's sample rate, with rendered clips kept in memory.

The speech cache holds audio at the synthesiser's rate on disk; a phone call needs it
at 8 kHz. Resampling a clip once and keeping it in memory means an answer costs no
synthesis, no disk read and no resampling on the call path.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import numpy as np

from voicebot.resample import resample
from voicebot.tts.base import Speech


class SpeechSource:
    """Anything with ``async render(text) -> Speech`` (e.g. ``SpeechCache``)."""

    async def render(self, text: str) -> Speech:  # pragma: no cover - protocol
        raise NotImplementedError


class Voice:
    """Clips of bot speech at a given rate, from a speech source, memoised (LRU)."""

    def __init__(self, source: SpeechSource, max_clips: int = 512):
        self.source = source
        self.max_clips = max_clips
        self._clips: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def cached(self, text: str, rate: int) -> np.ndarray | None:
        clip = self._clips.get((text, rate))
        if clip is not None:
            self._clips.move_to_end((text, rate))
        return clip

    async def ready(self, text: str, rate: int) -> bool:
        """Whether ``text`` plays without synthesis: in memory, or rendered on disk.

        A clip found on disk is loaded into memory on the way, so the call that asked
        plays it at once.
        """
        if self.cached(text, rate) is not None:
            return True
        peek = getattr(self.source, "get", None)  # SpeechCache.get: disk only, no synthesis
        if peek is None:
            return False
        speech = await asyncio.to_thread(peek, text)
        if speech is None:
            return False
        await self._keep(text, rate, speech)
        return True

    async def clip(self, text: str, rate: int) -> np.ndarray:
        """int16 samples of ``text`` spoken, at ``rate``."""
        found = self.cached(text, rate)
        if found is not None:
            return found
        return await self._keep(text, rate, await self.source.render(text))

    async def _keep(self, text: str, rate: int, speech: Speech) -> np.ndarray:
        samples = np.asarray(speech.samples, dtype=np.int16)
        if speech.sample_rate != rate:
            samples = await asyncio.to_thread(resample, samples, speech.sample_rate, rate)
        self._clips[(text, rate)] = samples
        if len(self._clips) > self.max_clips:
            self._clips.popitem(last=False)
        return samples

    async def warm(self, texts: list[str], rate: int) -> None:
        """Load clips into memory ahead of calls (after the disk cache was prerendered)."""
        for text in dict.fromkeys(texts):
            await self.clip(text, rate)
