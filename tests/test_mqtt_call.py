"""Whole calls publishing their events to a real Mosquitto.

``voicebot call`` runs as its own process on a recorded caller track (real VAD, Whisper,
dialogue; pyttsx3 for the bot's voice as in test_call.py) and publishes through the
pipeline; a separate MQTT client watches what arrives and when.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from mosquitto import Mosquitto, free_port
from test_mqtt import Checker, assert_valid_stream

from dashboards.config import MqttSettings, OperationsSettings
from dashboards.event_bus import EventBus
from dashboards.outbox import Outbox
from dashboards.pipeline import EventPipeline
from privacy.masking import BIRTH_DATE, MY_NUMBER, PHONE
from voicebot.asr.base import Transcript
from voicebot.bot import Bot
from voicebot.clock import VirtualClock
from voicebot.config import Settings
from voicebot.events import EventFanout, EventRecorder
from voicebot.recorded_call import RecordedCaller
from voicebot.wavfile import WavAudio, read_wav

# Recognition is charged a fixed time on the virtual clock, as on a quiet 2-core machine,
# so that these calls unfold the same way however busy the test machine is.
RECOGNITION_MS = 400.0

CALLER_WAV = DATA / "audio" / "dev" / "jf_alpha" / "008.wav"
PERSONAL = "電話番号は090-1234-5678で、マイナンバーは1234 5678 9012、生年月日は昭和45年3月2日です"
MASKED_PERSONAL = f"電話番号は{PHONE}で、マイナンバーは{MY_NUMBER}、生年月日は{BIRTH_DATE}です"
RAW_PIECES = ("090-1234-5678", "1234 5678 9012", "昭和45年3月2日", "5678")


@pytest.fixture(scope="module")
def speech_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech-cache")


def run_voicebot_call(env_extra: dict[str, str], data_dir: Path, cache: Path, *args: str):
    env = {
        **os.environ,
        "VOICEBOT_TTS__ENGINE": "pyttsx3",
        "VOICEBOT_TTS__CACHE_DIR": str(cache),
        "VOICEBOT_DATA_DIR": str(data_dir),
        **env_extra,
    }
    env.pop("VOICEBOT_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "commands.cli", "call", str(CALLER_WAV), "--json", "-q", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.asyncio
async def test_a_call_publishes_its_events_live_in_order(tmp_path, speech_cache):
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        settings = MqttSettings(host=broker.host, port=broker.port)  # default prefix and site
        async with Checker(broker, settings) as checker:
            proc = run_voicebot_call(broker.env(), tmp_path / "data", speech_cache)
            # The first event arrives while the process still runs the call.
            await checker.wait_until(lambda: bool(checker.messages), timeout=300)
            assert proc.poll() is None
            out, err = await asyncio.to_thread(proc.communicate, timeout=300)
            assert proc.returncode == 0, err
            result = json.loads(out)
            await checker.wait_until(lambda: checker.has_call_ended(result["call_id"]))
        stream = assert_valid_stream(checker, settings, result["call_id"])
        assert len(stream) == result["events"]  # everything the call emitted, once
        (ended,) = [p for p in stream if p["event"] == "call_ended"]
        assert ended["outcome"] == result["outcome"]
        # Seen live: the first events were received before the call had ended.
        first_received = next(t for _, p, t in checker.messages if p["seq"] == 1)
        assert first_received < ended["wall_time"]
        decided = [p for p in stream if p["event"] == "intent_decided"]
        assert decided and decided[0]["faq_id"] == result["turns"][0]["faq_id"]
        assert {p["event"] for p in stream} >= {"call_started", "recognized", "bot_speech_started"}
        with Outbox(tmp_path / "data" / "mqtt-outbox.sqlite3") as outbox:
            assert len(outbox) == 0
        # Recorded by default, in the data directory's database.
        db = _records_database(OperationsSettings(data_dir=tmp_path / "data"))
        if db is not None:
            assert result["call_id"] in _dump_tables(db)
            db.dispose()
    finally:
        broker.stop()


def test_a_call_goes_on_when_the_broker_is_unreachable(tmp_path, speech_cache):
    """No broker: the caller is served as usual and the events wait in the outbox."""
    env = {"VOICEBOT_MQTT__HOST": "127.0.0.1", "VOICEBOT_MQTT__PORT": str(free_port())}
    proc = run_voicebot_call(env, tmp_path / "data", speech_cache, "--no-record")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["turns"] and result["turns"][0]["action"] == "answer"
    assert "stay in" in err  # the warning names the outbox
    with Outbox(tmp_path / "data" / "mqtt-outbox.sqlite3") as outbox:
        payloads = [json.loads(m.payload) for m in outbox.peek(1000)]
    assert len(payloads) == result["events"]
    assert [p["seq"] for p in payloads] == list(range(1, len(payloads) + 1))
    assert {p["call_id"] for p in payloads} == {result["call_id"]}
    assert not (tmp_path / "data" / "voicebot.db").exists()  # --no-record


class ScriptedRecognizer:
    """Runs the real recogniser, then reports a scripted text instead of what it heard.

    A substitute only for the words: the caller tracks we have hold FAQ questions, not
    phone numbers or My Numbers, and personal data must not be recorded for fixtures.
    """

    def __init__(self, real, text: str):
        self.real, self.text = real, text
        self.name, self.sample_rate = "scripted", real.sample_rate

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        heard = await self.real.transcribe(samples)
        return Transcript(self.text, heard.audio_ms, heard.processing_ms)


@pytest.mark.asyncio
async def test_personal_data_is_published_and_stored_masked(tmp_path, speech_cache):
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        settings = Settings()
        settings.tts.engine = "pyttsx3"
        settings.tts.cache_dir = speech_cache
        real = Bot(settings)
        await real.prepare(rates=(8000,))
        bot = Bot(
            settings,
            understanding=real.understanding,
            recognizer=ScriptedRecognizer(real.recognizer, PERSONAL),
            synthesizer=real.synthesizer,
        )
        bot.voice = real.voice

        ops = OperationsSettings(
            data_dir=tmp_path / "data",
            mqtt=MqttSettings(host=broker.host, port=broker.port, site="masking"),
        )
        db = _records_database(ops)
        bus = EventBus()
        pipeline = EventPipeline(ops, bus=bus, db=db, subscribe=False)
        await pipeline.start()
        viewer = bus.subscribe()
        async with Checker(broker, ops.mqtt) as checker:
            audio = read_wav(CALLER_WAV)
            track = WavAudio(np.concatenate([audio.samples, np.zeros(3 * 8000, np.int16)]), 8000)
            clock = VirtualClock(work_ms=RECOGNITION_MS)
            caller = RecordedCaller(track, clock)
            unmasked = EventRecorder()
            session = bot.session(caller, clock, EventFanout(caller, unmasked, pipeline))
            result = await session.run()
            await checker.wait_until(lambda: checker.has_call_ended(result.call_id))
        await pipeline.stop()

        # The call itself heard the words (the dialogue needs them) ...
        assert any(getattr(e, "text", None) == PERSONAL for e in unmasked.events)
        # ... but MQTT got them masked,
        published = [p for p in checker.payloads(result.call_id) if p["event"] == "recognized"]
        assert published
        for p in published:
            assert (
                p["text"]
                == f"電話番号は{PHONE}で、マイナンバーは{MY_NUMBER}、生年月日は{BIRTH_DATE}です"
            )
        everything = _texts(checker.payloads())
        for raw in RAW_PIECES:
            assert raw not in everything
        assert PHONE in everything and MY_NUMBER in everything and BIRTH_DATE in everything
        # ... and so did the live view,
        shown = json.dumps([await viewer.__anext__() for _ in range(viewer.pending)])
        shown = json.loads(shown)
        assert any(d.get("text", "").startswith(f"電話番号は{PHONE}") for d in shown)
        for raw in RAW_PIECES:
            assert raw not in _texts(shown)
        # ... and the call records (when the records module is there).
        if db is not None:
            dump = _dump_tables(db)
            assert PHONE in dump
            for raw in RAW_PIECES:
                assert raw not in dump
            db.dispose()
    finally:
        broker.stop()


def _records_database(ops: OperationsSettings):
    """The call records database, if the records module exists yet (else None)."""
    import importlib.util

    if importlib.util.find_spec("dashboards.recorder") is None:
        return None
    from dashboards.db import Database

    db = Database(ops.database_url())
    db.create_all()
    return db


def _texts(value: object) -> str:
    """Every string (keys and values) in a JSON-like value, one per line, for a search for
    unmasked data. Numbers are left out: a timestamp such as 1796517787.5678635 holds
    "5678" without holding anything the caller said."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_texts(k) + "\n" + _texts(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return "\n".join(_texts(v) for v in value)
    return ""


def _dump_tables(db) -> str:
    """Every text in every table, for a search for unmasked data (numbers and times left
    out, as in ``_texts``)."""
    from sqlalchemy import inspect, text

    parts = []
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.append("\n".join(v for v in row if isinstance(v, str)))
    return "\n".join(parts)
