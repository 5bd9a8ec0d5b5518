"""One reply, rendered piece by piece so the caller hears its start while the rest renders.

Almost everything the bot says is pre-rendered and plays at once. Text that is not (an
answer edited a minute ago, or every answer while the first start is still rendering) is
split into sentences: the first sentence plays as soon as it is synthesised and the next
is synthesised meanwhile, so the caller waits for one sentence, not for the whole answer.
Pieces are rendered one at a time, in order, each as a ``Job`` on the call clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voicebot.clock import Clock
from voicebot.jobs import Job
from voicebot.playout import Utterance
from voicebot.tts.cache import DEFAULT_SENTENCE_PAUSE_MS, split_sentences

if TYPE_CHECKING:
    from voicebot.dialogue import Reply

Render = Callable[[str], Awaitable[np.ndarray]]  # text -> int16 samples at the call rate
IsReady = Callable[[str], Awaitable[bool]]  # text -> whether it plays without synthesis


@dataclass(frozen=True)
class Piece:
    """A stretch of a reply rendered in one go: a whole part, or one sentence of it."""

    text: str
    pause_after_ms: float = 0.0  # between sentences of one part, as the engine would pause


async def plan_pieces(parts: tuple[str, ...], is_ready: IsReady) -> list[Piece]:
    """Whole parts where their audio is ready; sentence by sentence where it must be made."""
    pieces: list[Piece] = []
    for part in parts:
        sentences = [part] if await is_ready(part) else split_sentences(part) or [part]
        for i, sentence in enumerate(sentences):
            pause = DEFAULT_SENTENCE_PAUSE_MS if i < len(sentences) - 1 else 0.0
            pieces.append(Piece(sentence, pause))
    return pieces


class ReplyStream:
    """The pieces of one reply, rendered in order and handed out as playout utterances."""

    def __init__(
        self,
        reply: Reply,
        reply_id: int,
        pieces: list[Piece],
        *,
        clock: Clock,
        render: Render,
        rate: int,
        interruptible: bool,
    ) -> None:
        self.reply = reply
        self.reply_id = reply_id
        self.pieces = pieces
        self.clock = clock
        self._render = render
        self.rate = rate
        self.interruptible = interruptible
        self.taken = 0  # pieces handed to playout
        self._job: Job[np.ndarray] | None = None

    async def start(self) -> None:
        """Begin rendering the first piece."""
        await self._start_next()

    async def _start_next(self) -> None:
        if self.taken < len(self.pieces):
            text = self.pieces[self.taken].text
            self._job = await Job.start(self.clock, self._render(text))
        else:
            self._job = None

    @property
    def finished(self) -> bool:
        """Every piece has been handed to playout."""
        return self.taken >= len(self.pieces)

    def ready(self) -> bool:
        """The next piece is rendered (or its rendering failed)."""
        return self._job is not None and self._job.done()

    async def take(self) -> Utterance:
        """The next rendered piece as an utterance; starts rendering the one after.

        Raises whatever the synthesis raised: the caller of this decides what the caller
        on the line hears instead.
        """
        assert self._job is not None
        samples = self._job.result()
        piece = self.pieces[self.taken]
        if piece.pause_after_ms:
            pause = np.zeros(round(piece.pause_after_ms * self.rate / 1000.0), dtype=np.int16)
            samples = np.concatenate([samples, pause])
        utterance = Utterance(
            samples,
            piece.text,
            self.reply.kind,
            self.reply_id,
            part=self.taken,
            last=self.taken == len(self.pieces) - 1,
            interruptible=self.interruptible,
        )
        self.taken += 1
        await self._start_next()
        return utterance

    def cancel(self) -> None:
        """Stop rendering (barge-in, end of call); a live synthesis finishes unheard."""
        if self._job is not None:
            self._job.cancel()
            self._job = None
        self.taken = len(self.pieces)
