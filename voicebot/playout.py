"""The bot's outgoing audio for one call: a queue of utterances played 20 ms at a time.

Pulling one frame per tick (instead of pushing whole clips to the transport) is what
makes barge-in immediate: pausing or cancelling takes effect on the very next frame.
A pause keeps the position, so a caller's short 「はい」 or cough can let the bot resume
where it stopped; a cancel drops everything queued.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)  # identity: two identical clips are still two utterances
class Utterance:
    """One piece of bot speech in the queue."""

    samples: np.ndarray  # int16 mono at the playout rate
    text: str
    kind: str
    reply_id: int = 0  # parts of one reply share an id
    part: int = 0  # index of this part in its reply
    last: bool = True  # the reply's last part
    interruptible: bool = True  # barge-in may stop it
    position: int = 0  # samples already played


@dataclass
class Tick:
    """What one 20 ms tick of playout produced."""

    frame: np.ndarray
    started: list[Utterance] = field(default_factory=list)  # began in this frame
    finished: list[Utterance] = field(default_factory=list)  # ended in this frame


class Playout:
    """Queue of bot utterances, played out frame by frame at ``sample_rate``."""

    def __init__(self, sample_rate: int, frame_ms: int = 20):
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._queue: deque[Utterance] = deque()
        self.paused = False

    @property
    def speaking(self) -> bool:
        """True while bot audio is queued (paused or not)."""
        return bool(self._queue)

    @property
    def current(self) -> Utterance | None:
        return self._queue[0] if self._queue else None

    def enqueue(self, utterance: Utterance) -> None:
        self._queue.append(utterance)

    def queued(self, reply_id: int) -> list[Utterance]:
        """The utterances of one reply still queued (the first may be half played)."""
        return [u for u in self._queue if u.reply_id == reply_id]

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def cancel(self, keep: Collection[int] = ()) -> list[Utterance]:
        """Drop queued speech, except the replies in ``keep``; returns what was dropped
        (the first may be half played)."""
        dropped = [u for u in self._queue if u.reply_id not in keep]
        self._queue = deque(u for u in self._queue if u.reply_id in keep)
        self.paused = False
        return dropped

    def next_frame(self) -> Tick:
        """The next 20 ms of bot audio (silence when idle or paused)."""
        out = np.zeros(self.frame_samples, dtype=np.int16)
        tick = Tick(out)
        if self.paused:
            return tick
        filled = 0
        while filled < self.frame_samples and self._queue:
            utt = self._queue[0]
            if utt.position == 0:
                tick.started.append(utt)
            take = min(self.frame_samples - filled, len(utt.samples) - utt.position)
            out[filled : filled + take] = utt.samples[utt.position : utt.position + take]
            utt.position += take
            filled += take
            if utt.position >= len(utt.samples):
                tick.finished.append(self._queue.popleft())
        return tick
