"""One phone call, end to end: caller audio in, understanding, bot audio out.

The session is driven by the caller's 20 ms frames. Each frame goes through voice
activity detection and endpointing; turn events start recognition (speculatively at the
first short pause, so that it is usually done when the turn ends), the dialogue decides
the reply, and the reply's cached audio is queued for playout, one frame per incoming
frame. Barge-in pauses the bot on the very next frame and stops it once the caller's
speech is long enough to be a turn (a cough or a 「はい」 lets it resume).

Blocking work runs as ``Job``s: live on threads, recorded on a virtual clock that is
charged with the measured processing time (see ``voicebot.jobs``). The same code thus
serves SIP, WebRTC and recorded calls, and reports the latency a caller would have had.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicebot import prompts
from voicebot.asr.base import Recognizer, Transcript
from voicebot.clock import Clock
from voicebot.dialogue import Dialogue, Handover, Next, Reply, State
from voicebot.endpointing import (
    Endpointer,
    EndpointingConfig,
    EndpointState,
    NoInput,
    ShortPause,
    SpeechDiscarded,
    SpeechEnd,
    SpeechStart,
)
from voicebot.events import (
    BotSpeechStarted,
    BotSpeechStopped,
    CallEnded,
    CallerSpeechEnded,
    CallerSpeechStarted,
    CallStarted,
    ComponentFailed,
    EventSink,
    IntentDecided,
    Recognized,
    TransferAnswered,
    TransferFailed,
    TransferRequested,
)
from voicebot.frames import AudioFrame, DtmfFrame
from voicebot.jobs import Job
from voicebot.playout import Playout, Utterance
from voicebot.reply_stream import ReplyStream, plan_pieces
from voicebot.resample import StreamResampler, resample
from voicebot.transport import CallTransport, TransferError
from voicebot.understanding import Understanding
from voicebot.vad import SUPPORTED_RATES, load_vad
from voicebot.voice import Voice
from voicebot.waiting import WaitAction, WaitPolicy, WaitWatch

log = logging.getLogger(__name__)

FRAME_MS = 20


@dataclass
class CallConfig:
    """Per-call behaviour that is not dialogue: timing of turns and recognition."""

    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    yes_no_min_speech_ms: int = 150  # a short 「はい」 answers a confirmation
    preroll_ms: int = 200  # audio kept before the detected start of speech
    tail_ms: int = 100  # audio kept after the last speech frame
    speculative: bool = True  # recognise at the first short pause
    # A transcript that ends like an unfinished sentence (〜んですが、〜て) waits for this
    # much silence before the bot answers, in case the caller goes on.
    hold_incomplete_ms: int = 750
    # Speech resuming this soon after a turn, before its reply has played on, is the same
    # sentence: the turn is undone and the two parts are recognised together.
    merge_window_ms: int = 1000
    max_call_ms: float = 20 * 60 * 1000.0
    # Fillers while the caller waits for a late reply, and when to give up on it.
    waiting: WaitPolicy = field(default_factory=WaitPolicy)
    # A hang-up this soon after the reply to a question started is a caller who gave up
    # waiting, not one who heard the answer.
    abandon_within_ms: float = 3000.0


@dataclass
class TurnLog:
    """One exchange, as ``voicebot call --json`` reports it."""

    heard: str
    faq_id: str | None
    score: float
    action: str
    said: str
    speech_end_ms: float | None
    reply_start_ms: float | None = None
    latency_ms: float | None = None
    asr_ms: float | None = None
    speculative: bool = False
    first_audio_ms: float | None = None  # wait until the first bot audio (filler or reply)
    fillers: int = 0  # fillers played while the caller waited for this reply
    choices: tuple[str, ...] = ()  # the entries offered when the bot asked which one

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class CallResult:
    call_id: str
    outcome: str  # completed, transferred, hung_up, hung_up_waiting
    duration_ms: float
    turns: list[TurnLog]
    handover: Handover | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 1),
            "turns": [t.as_dict() for t in self.turns],
            "handover": self.handover.as_dict() if self.handover else None,
        }


@dataclass
class _CommittedUtterance:
    """The last caller turn the dialogue acted on, in case it must be undone."""

    speech_start_ms: float
    last_speech_ms: float
    snapshot: dict[str, Any]
    turn: TurnLog
    reply_id: int = 0


_INCOMPLETE = re.compile(
    r"(?:んですが|ですが|んですけど|ですけど|けど|けれど(?:も)?|が|て|で|し|と|ので|から|の"
    r"|のに|ても|たら|れば|てね|でね|は|を|に|も|って|、)$"
    r"|^(?:あの|あのね|あのう|えっと|ええと|えー|その|もしもし)$"  # only a filler so far
)


def looks_unfinished(text: str) -> bool:
    """True if a transcript ends where Japanese speakers pause mid-sentence."""
    core = text.strip().rstrip("。. ")
    return bool(_INCOMPLETE.search(core))


class CallSession:
    """Runs one call over a transport until it is completed, transferred or hung up."""

    def __init__(
        self,
        *,
        transport: CallTransport,
        understanding: Understanding,
        recognizer: Recognizer,
        voice: Voice,
        events: EventSink,
        clock: Clock,
        config: CallConfig | None = None,
        dialogue: Dialogue | None = None,
        call_id: str | None = None,
    ):
        self.transport = transport
        self.recognizer = recognizer
        self.voice = voice
        self.events = events
        self.clock = clock
        self.config = config or CallConfig()
        self.dialogue = dialogue or Dialogue(understanding)
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.caller: str | None = None  # the caller's number or address, when known
        self.rate = transport.sample_rate
        self.vad_rate = self.rate if self.rate in SUPPORTED_RATES else 16000
        self._to_vad = None if self.rate == self.vad_rate else StreamResampler(self.rate, 16000)
        self.vad = load_vad(self.vad_rate)
        self.endpointer = Endpointer(self.config.endpointing, window_ms=self.vad.window_ms)
        self.playout = Playout(self.rate, FRAME_MS)
        self._history: deque[tuple[float, np.ndarray]] = deque()  # (start_ms, samples)
        self._history_ms = 0.0
        # job, last_speech_ms, and where the recognised audio starts
        self._spec: tuple[Job[Transcript], float, float] | None = None
        self._recognition: tuple[Job[Transcript], SpeechEnd, bool] | None = None
        self._pending: list[ReplyStream] = []
        self.wait = WaitWatch(self.config.waiting)
        self._filler_clips: dict[str, np.ndarray] = {}
        self._filler_turn: TurnLog | None = None  # the turn the caller is waiting on
        self._reply_seq = 0
        self._replies: dict[int, tuple[Reply, TurnLog | None]] = {}
        self._barge_in_at: float | None = None
        self._held: tuple[Transcript, SpeechEnd, bool] | None = None
        self._continue_from: float | None = None  # start of a sentence the caller resumed
        self._last_utterance: _CommittedUtterance | None = None
        self._interrupted: set[int] = set()  # reply ids cut short by barge-in
        self.turns: list[TurnLog] = []
        self.outcome: str | None = None
        self.handover: Handover | None = None

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> CallResult:
        self.events.emit(
            CallStarted(
                call_id=self.call_id, t_ms=0.0, transport=self.transport.name, caller=self.caller
            )
        )
        await self._load_fillers()
        await self._reply(self.dialogue.start(), turn=None)
        try:
            while self.outcome is None:
                frame = await self.transport.receive()
                if frame is None:
                    self.outcome = self._hang_up_outcome()
                    break
                if isinstance(frame, DtmfFrame):
                    await self._on_dtmf(frame.digit)
                    continue
                await self._on_audio(frame)
                if self.clock.now_ms() > self.config.max_call_ms:
                    log.warning("call %s: maximum call length reached", self.call_id)
                    await self._end("hung_up")
        finally:
            # Work still under way is of no use to a call that has ended.
            self._drop_speculation()
            if self._recognition is not None:
                self._recognition[0].cancel()
            for p in self._pending:
                p.cancel()
            self.wait.cancel()
        duration = self.clock.now_ms()
        self.events.emit(
            CallEnded(
                call_id=self.call_id, t_ms=duration, outcome=self.outcome, duration_ms=duration
            )
        )
        return CallResult(self.call_id, self.outcome, duration, self.turns, self.handover)

    async def _on_audio(self, frame: AudioFrame) -> None:
        start = frame.timestamp_ms if frame.timestamp_ms is not None else self._history_ms
        if not self.clock.realtime:
            self.clock.advance_to(start + frame.duration_ms)
        samples = frame.samples
        self._remember(start, samples)
        vad_frame = frame
        if self._to_vad is not None:
            vad_frame = AudioFrame.from_samples(self._to_vad.process(samples), 16000, start)
        for window in self.vad.process_frame(vad_frame):
            for event in self.endpointer.update(window.end_ms, window.probability):
                await self._on_endpoint(event)
        self._check_barge_in()
        await self._poll_jobs()
        await self._fill_silence()
        await self._play_one_frame()

    # -- caller audio --------------------------------------------------------------------
    def _remember(self, start_ms: float, samples: np.ndarray) -> None:
        """Keep the recent caller audio, from which utterances are cut."""
        self._history.append((start_ms, samples.copy()))
        self._history_ms = start_ms + 1000.0 * len(samples) / self.rate
        horizon = self.config.endpointing.max_utterance_ms + 2000
        while self._history and self._history[0][0] < self._history_ms - horizon:
            self._history.popleft()

    def _utterance(self, start_ms: float, end_ms: float) -> np.ndarray:
        """Caller audio between two call times, at the recogniser's rate."""
        lo = start_ms - self.config.preroll_ms
        hi = end_ms + self.config.tail_ms
        pieces = [
            (t, s) for t, s in self._history if t + 1000.0 * len(s) / self.rate > lo and t < hi
        ]
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        first_t = pieces[0][0]
        audio = np.concatenate([s for _, s in pieces])
        a = max(0, int((lo - first_t) * self.rate / 1000))
        b = max(a, int((hi - first_t) * self.rate / 1000))
        audio = audio[a:b]
        if self.rate != self.recognizer.sample_rate:
            audio = resample(audio, self.rate, self.recognizer.sample_rate)
        return audio

    async def _on_endpoint(self, event: object) -> None:
        now = self.clock.now_ms()
        if isinstance(event, SpeechStart):
            self.endpointer.disarm_no_input()
            self.events.emit(CallerSpeechStarted(call_id=self.call_id, t_ms=now))
        elif isinstance(event, ShortPause):
            if self.config.speculative:
                self._drop_speculation()  # a pause earlier in the utterance is stale now
                self._maybe_resume_sentence(event.speech_start_ms)
                start = self._sentence_start(event.speech_start_ms)
                audio = self._utterance(start, event.last_speech_ms)
                job = await Job.start(
                    self.clock, self.recognizer.transcribe(audio), lane=self.recognizer
                )
                self._spec = (job, event.last_speech_ms, start)
        elif isinstance(event, SpeechDiscarded):
            self._drop_speculation()
            if self._idle():
                self.endpointer.arm_no_input(now)
        elif isinstance(event, SpeechEnd):
            await self._on_speech_end(event)
        elif isinstance(event, NoInput) and self._idle():
            turn = TurnLog("", None, 0.0, "no_input", "", None)
            self.turns.append(turn)
            await self._reply(self.dialogue.on_no_input(), turn)

    def _idle(self) -> bool:
        """Nothing is being said, recognised or rendered: the bot is waiting for the caller."""
        return not self.playout.speaking and not self._pending and self._recognition is None

    def _check_barge_in(self) -> None:
        """Pause the bot as soon as the caller seems to speak; stop it once that is a turn.

        Pausing on the first speech window keeps the bot's reaction within ~50 ms; a cough
        or a short 「はい」 falls back to silence without becoming a turn, and the bot
        resumes where it paused. Closing words and transfer notices are not interrupted.
        """
        now = self.clock.now_ms()
        state = self.endpointer.state
        if self._barge_in_at is None:
            current = self.playout.current
            if (
                state is not EndpointState.IDLE
                and current is not None
                and current.interruptible
                and not self.playout.paused
            ):
                self.playout.pause()
                self._barge_in_at = now - self.vad.window_ms
            return
        if state is EndpointState.IDLE:
            self.playout.resume()  # it was not a turn: carry on speaking
            self._barge_in_at = None
        elif (
            state is EndpointState.SPEECH
            and now - self._barge_in_at >= self.endpointer.min_speech_ms
        ):
            self._stop_bot(barged_in=True)

    def _stop_bot(self, barged_in: bool) -> None:
        dropped = self.playout.cancel()
        if barged_in:  # the caller did not hear these out (see _maybe_resume_sentence)
            self._interrupted.update(u.reply_id for u in dropped)
        self._barge_in_at = None
        for p in self._pending:
            p.cancel()
        self._pending.clear()
        if dropped:
            self.events.emit(
                BotSpeechStopped(
                    call_id=self.call_id, t_ms=self.clock.now_ms(), barged_in=barged_in
                )
            )

    def _drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec[0].cancel()
            self._spec = None

    def _sentence_start(self, speech_start_ms: float) -> float:
        """Where the caller's current sentence began (earlier if they resumed one)."""
        starts = [speech_start_ms]
        if self._continue_from is not None:
            starts.append(self._continue_from)
        if self._held is not None:
            starts.append(self._held[1].speech_start_ms)
        return min(starts)

    def _maybe_resume_sentence(self, speech_start_ms: float) -> None:
        """Speech right after a turn whose reply has not really been heard continues it."""
        last = self._last_utterance
        if last is None or self._continue_from is not None:
            return
        gap = speech_start_ms - last.last_speech_ms
        unheard = last.turn.reply_start_ms is None or last.reply_id in self._interrupted
        if gap <= self.config.merge_window_ms and unheard and last.turn in self.turns:
            log.info(
                "call %s: caller resumed the last sentence; recognising it whole", self.call_id
            )
            self.dialogue.restore(last.snapshot)
            self.turns.remove(last.turn)
            self._continue_from = last.speech_start_ms
            self._last_utterance = None

    async def _on_speech_end(self, event: SpeechEnd) -> None:
        if self._barge_in_at is not None or (
            self.playout.current is not None and self.playout.current.interruptible
        ):
            self._stop_bot(barged_in=True)
        if self._held is not None:  # the held half-sentence goes on: recognise it whole
            self._continue_from = self._held[1].speech_start_ms
            self._held = None
        self._maybe_resume_sentence(event.speech_start_ms)
        if self.dialogue.state is not State.ENDED:
            self.wait.start(event.last_speech_ms)  # the caller now waits for the bot
        self.events.emit(
            CallerSpeechEnded(
                call_id=self.call_id,
                t_ms=self.clock.now_ms(),
                speech_start_ms=event.speech_start_ms,
                last_speech_ms=event.last_speech_ms,
            )
        )
        spec = self._spec
        self._spec = None
        start = self._sentence_start(event.speech_start_ms)
        if spec is not None and spec[1] >= event.last_speech_ms - 1e-6 and spec[2] == start:
            # nothing new was said: reuse
            self._recognition = (spec[0], SpeechEnd(event.at_ms, start, event.last_speech_ms), True)
            return
        if spec is not None:
            spec[0].cancel()
        audio = self._utterance(start, event.last_speech_ms)
        job = await Job.start(self.clock, self.recognizer.transcribe(audio), lane=self.recognizer)
        self._recognition = (job, SpeechEnd(event.at_ms, start, event.last_speech_ms), False)

    # -- keys ----------------------------------------------------------------------------
    async def _on_dtmf(self, digit: str) -> None:
        reply = self.dialogue.on_dtmf(digit)
        if reply is None:
            return
        if self.playout.speaking:
            self._stop_bot(barged_in=True)
        turn = TurnLog(f"[DTMF {digit}]", None, 1.0, reply.kind, "", self.clock.now_ms())
        self.turns.append(turn)
        await self._reply(reply, turn)

    # -- jobs and replies ----------------------------------------------------------------
    async def _poll_jobs(self) -> None:
        if self._recognition is not None and self._recognition[0].done():
            job, end, speculative = self._recognition
            self._recognition = None
            await self._on_transcript(job, end, speculative)
        if self._held is not None and self.endpointer.state is EndpointState.IDLE:
            transcript, end, speculative = self._held
            if self.clock.now_ms() - end.last_speech_ms >= self.config.hold_incomplete_ms:
                self._held = None
                await self._commit(transcript, end, speculative)
        for stream in list(self._pending):
            await self._take_rendered(stream)

    async def _on_transcript(self, job: Job[Transcript], end: SpeechEnd, speculative: bool) -> None:
        now = self.clock.now_ms()
        try:
            transcript = job.result()
        except Exception as exc:
            log.exception("call %s: recognition failed", self.call_id)
            self.events.emit(
                ComponentFailed(
                    call_id=self.call_id, t_ms=now, component="recognizer", error=str(exc)
                )
            )
            turn = TurnLog("", None, 0.0, "failure", "", end.last_speech_ms)
            self.turns.append(turn)
            await self._reply(self.dialogue.on_failure("recognizer"), turn)
            return
        text = transcript.text.strip()
        self.events.emit(
            Recognized(
                call_id=self.call_id,
                t_ms=now,
                text=text,
                final=True,
                processing_ms=transcript.processing_ms,
            )
        )
        waited = now - end.last_speech_ms
        speaking_again = self.endpointer.state is not EndpointState.IDLE
        if speaking_again or (looks_unfinished(text) and waited < self.config.hold_incomplete_ms):
            self._held = (transcript, end, speculative)  # the caller goes on, or may
            return
        await self._commit(transcript, end, speculative)

    async def _commit(self, transcript: Transcript, end: SpeechEnd, speculative: bool) -> None:
        """Act on a finished caller turn: dialogue, reply."""
        text = transcript.text.strip()
        if self.dialogue.state is State.ENDED:
            # The bot is saying its last words (goodbye, transfer notice): nothing to decide.
            log.info(  # never the words: they may hold personal data
                "call %s: ignoring speech after the end of the dialogue (%d characters)",
                self.call_id,
                len(text),
            )
            self.wait.cancel()
            return
        self._continue_from = None
        snapshot = self.dialogue.snapshot()
        if self.endpointer.min_speech_ms != self.config.endpointing.min_speech_ms:
            self.endpointer.set_min_speech_ms(None)
        reply = (
            self.dialogue.on_utterance(
                text, transcript.alternatives, transcript.confidence, transcript.unprompted
            )
            if text
            else self.dialogue.on_no_input()
        )
        decision = reply.decision
        turn = TurnLog(
            heard=self.dialogue.turns[-1].heard if self.dialogue.turns else text,
            faq_id=decision.faq_id if decision else None,
            score=round(decision.score, 4) if decision else 0.0,
            action=reply.kind,
            said="",
            speech_end_ms=end.last_speech_ms,
            asr_ms=transcript.processing_ms,
            speculative=speculative,
            choices=decision.choices if decision else (),
        )
        self.events.emit(
            IntentDecided(
                call_id=self.call_id,
                t_ms=self.clock.now_ms(),
                text=text,
                faq_id=turn.faq_id,
                score=turn.score,
                action=reply.kind,
                candidates=[
                    {"faq_id": c.faq_id, "score": c.score}
                    for c in (decision.candidates if decision else [])[:3]
                ],
            )
        )
        self.turns.append(turn)
        await self._reply(reply, turn)
        self._last_utterance = _CommittedUtterance(
            end.speech_start_ms, end.last_speech_ms, snapshot, turn, self._reply_seq
        )

    async def _reply(self, reply: Reply, turn: TurnLog | None) -> None:
        """Render the reply piece by piece (cached audio, usually) and queue it for playout."""
        self._reply_seq += 1
        if turn is not None:
            turn.said = reply.text
            turn.action = reply.kind
            self.wait.start(
                turn.speech_end_ms if turn.speech_end_ms is not None else self.clock.now_ms()
            )
            self._filler_turn = turn
        if reply.expect_yes_no:
            self.endpointer.set_min_speech_ms(self.config.yes_no_min_speech_ms)
        pieces = await plan_pieces(reply.parts, lambda text: self.voice.ready(text, self.rate))
        stream = ReplyStream(
            reply,
            self._reply_seq,
            pieces,
            clock=self.clock,
            render=lambda text: self.voice.clip(text, self.rate),
            rate=self.rate,
            interruptible=reply.next is Next.LISTEN,
        )
        self._replies[self._reply_seq] = (reply, turn)
        self._pending.append(stream)
        await stream.start()
        await self._take_rendered(stream)

    async def _take_rendered(self, stream: ReplyStream) -> None:
        """Queue every piece of ``stream`` rendered by now; on a synthesis failure, apologise."""
        while stream.ready():
            try:
                utterance = await stream.take()
            except Exception as exc:
                stream.cancel()
                self._pending.remove(stream)
                await self._synthesis_failed(stream, exc)
                return
            self.playout.enqueue(utterance)
        if stream.finished and stream in self._pending:
            self._pending.remove(stream)

    async def _synthesis_failed(self, stream: ReplyStream, exc: Exception) -> None:
        log.error("call %s: speech synthesis failed: %s", self.call_id, exc)
        self.events.emit(
            ComponentFailed(
                call_id=self.call_id,
                t_ms=self.clock.now_ms(),
                component="synthesizer",
                error=str(exc),
            )
        )
        if stream.reply.kind == "failure":
            # The apology cannot be spoken whole: hand over after what is already queued
            # of it, or at once, without words; never dead air.
            queued = self.playout.queued(stream.reply_id)
            if queued:
                queued[-1].last = True
            else:
                await self._after_reply_async(stream.reply)
            return
        _, turn = self._replies.get(stream.reply_id, (None, None))
        await self._reply(self.dialogue.on_failure("synthesizer"), turn)

    # -- the caller waiting ----------------------------------------------------------------
    async def _load_fillers(self) -> None:
        """The fillers' audio, in memory before the first question (pre-rendered prompts)."""
        for text in (prompts.FILLER, prompts.FILLER_AGAIN):
            try:
                self._filler_clips[text] = await self.voice.clip(text, self.rate)
            except Exception:  # a call without fillers still works; the reply will come
                log.exception("call %s: filler %r could not be rendered", self.call_id, text)

    async def _fill_silence(self) -> None:
        """While the caller waits for a late reply, play a filler; after too long, hand over."""
        if self.outcome is not None or self._held is not None:
            return  # a held half-sentence: the bot is listening, not keeping anyone waiting
        if self.endpointer.state is not EndpointState.IDLE:
            return  # the caller is speaking
        action = self.wait.due(self.clock.now_ms(), self.playout.speaking)
        if action is WaitAction.NOTHING:
            return
        if action is WaitAction.GIVE_UP:
            await self._give_up_waiting()
            return
        text = prompts.FILLER if action is WaitAction.FILLER else prompts.FILLER_AGAIN
        clip = self._filler_clips.get(text)
        if clip is None:
            return
        self.wait.played_filler()
        if self._filler_turn is not None:
            self._filler_turn.fillers += 1
        self.playout.enqueue(Utterance(clip, text, "filler", reply_id=0))

    async def _give_up_waiting(self) -> None:
        """The reply has stalled far too long: drop it, apologise and hand over."""
        component = "recognizer" if self._recognition is not None else "synthesizer"
        log.warning("call %s: the %s stalled; handing over", self.call_id, component)
        self.events.emit(
            ComponentFailed(
                call_id=self.call_id, t_ms=self.clock.now_ms(), component=component, error="stalled"
            )
        )
        if self._recognition is not None:
            self._recognition[0].cancel()
            self._recognition = None
        apology = next((p.reply for p in self._pending if p.reply.kind == "failure"), None)
        self._drop_speculation()
        self._stop_bot(barged_in=False)
        self.wait.cancel()
        if apology is not None:
            # Not even the apology can be rendered: hand over without words.
            await self._after_reply_async(apology)
            return
        turn = TurnLog("", None, 0.0, "failure", "", self.clock.now_ms())
        self.turns.append(turn)
        await self._reply(self.dialogue.on_failure(component), turn)

    def _hang_up_outcome(self) -> str:
        """``hung_up_waiting`` if the caller gave up waiting for the bot, else ``hung_up``."""
        if self.wait.waiting or self._recognition is not None or self._held is not None:
            return "hung_up_waiting"
        now = self.clock.now_ms()
        for turn in reversed(self.turns):
            if turn.speech_end_ms is None:
                continue
            started = turn.reply_start_ms
            if started is not None and now - started < self.config.abandon_within_ms:
                return "hung_up_waiting"
            break
        return "hung_up"

    async def _play_one_frame(self) -> None:
        now = self.clock.now_ms()
        tick = self.playout.next_frame()
        end = now + FRAME_MS
        for utt in tick.finished:  # a filler that ended before the reply began, in order
            if utt.kind == "filler" and utt not in tick.started:
                self.events.emit(BotSpeechStopped(call_id=self.call_id, t_ms=now))
                self.wait.filler_finished(now)
        for utt in tick.started:
            if utt.kind == "filler":
                self._filler_started(utt, now)
                continue
            self.wait.heard(now)
            reply, turn = self._replies.get(utt.reply_id, (None, None))
            first_part = utt.part == 0
            latency = None
            if first_part and turn is not None and turn.reply_start_ms is None:
                turn.reply_start_ms = now
                if turn.speech_end_ms is not None:
                    turn.latency_ms = now - turn.speech_end_ms
                    latency = turn.latency_ms
                    if turn.first_audio_ms is None:
                        turn.first_audio_ms = latency
            if first_part:
                self.events.emit(
                    BotSpeechStarted(
                        call_id=self.call_id,
                        t_ms=now,
                        text=reply.text if reply else utt.text,
                        kind=utt.kind,
                        latency_ms=latency,
                    )
                )
        await self.transport.send(AudioFrame.from_samples(tick.frame, self.rate, now))
        for utt in tick.finished:
            if utt.kind == "filler":
                if utt in tick.started:
                    self.events.emit(BotSpeechStopped(call_id=self.call_id, t_ms=end))
                    self.wait.filler_finished(end)
                continue
            reply, _ = self._replies.get(utt.reply_id, (None, None))
            if reply is not None and utt.last:
                self.events.emit(BotSpeechStopped(call_id=self.call_id, t_ms=end))
                await self._after_reply_async(reply)
            elif not self.playout.speaking and any(
                p.reply_id == utt.reply_id for p in self._pending
            ):
                self.wait.start(end, mid_reply=True)  # the next sentence is not ready yet

    def _filler_started(self, utt: Utterance, now: float) -> None:
        waited = None if self.wait.since_ms is None else now - self.wait.since_ms
        turn = self._filler_turn
        if turn is not None and turn.first_audio_ms is None and turn.speech_end_ms is not None:
            turn.first_audio_ms = now - turn.speech_end_ms
        self.events.emit(
            BotSpeechStarted(
                call_id=self.call_id, t_ms=now, text=utt.text, kind="filler", latency_ms=waited
            )
        )

    async def _after_reply_async(self, reply: Reply) -> None:
        if reply.next is Next.LISTEN:
            self.endpointer.arm_no_input(self.clock.now_ms())
        elif reply.next is Next.HANGUP:
            await self._end("completed")
        elif reply.next is Next.TRANSFER:
            await self._transfer(reply.handover)

    async def _transfer(self, handover: Handover | None) -> None:
        now = self.clock.now_ms()
        self.handover = handover
        summary = handover.as_dict() if handover else {}
        self.events.emit(
            TransferRequested(
                call_id=self.call_id, t_ms=now, reason=summary.get("reason", ""), summary=summary
            )
        )
        try:
            await self.transport.transfer(handover)
        except TransferError as exc:
            log.warning("call %s: transfer failed: %s", self.call_id, exc)
            self.events.emit(
                TransferFailed(call_id=self.call_id, t_ms=self.clock.now_ms(), reason=str(exc))
            )
            await self._reply(self.dialogue.on_transfer_failed(), turn=None)
            return
        self.events.emit(TransferAnswered(call_id=self.call_id, t_ms=self.clock.now_ms()))
        self.outcome = "transferred"

    async def close_for_shutdown(self) -> None:
        """The service is stopping: stop listening, tell the caller, hand over or hang up.

        Called from outside the call's own task; the reply is played by the call loop as
        usual, so the caller hears every word before the line is handed over or closed.
        """
        if self.outcome is not None:
            return
        self._drop_speculation()
        self._stop_bot(barged_in=False)
        await self._reply(self.dialogue.on_shutdown(), turn=None)

    async def _end(self, outcome: str) -> None:
        self.outcome = outcome
        await self.transport.hangup()
