from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from faq.store import Faq, load_faq
from voicebot.bot import Bot
from voicebot.config import Settings
from voicebot.understanding import Understanding

DATA = Path(__file__).parent / "data"


def read_tsv(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return [(u, e) for u, e in rows[1:]]


@pytest.fixture(scope="session")
def faq() -> Faq:
    return load_faq()


@pytest.fixture(scope="session")
def understanding() -> Understanding:
    return Understanding.load(Settings())


@pytest.fixture(scope="session")
def topics() -> list[dict]:
    return yaml.safe_load((DATA / "tax-topics.yaml").read_text(encoding="utf-8"))["topics"]


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    """Settings for whole-call tests: the fast pyttsx3 voice, a speech cache of their own."""
    s = Settings()
    s.tts.engine = "pyttsx3"
    s.tts.cache_dir = tmp_path_factory.mktemp("speech-cache")
    return s


@pytest.fixture(scope="session")
def bot(settings) -> Bot:
    """One bot (real Whisper, pyttsx3) with every fixed utterance rendered, shared by the
    call tests; modules that need another kind define their own ``bot``."""
    bot = Bot(settings)
    asyncio.run(bot.prepare(rates=(8000,)))
    return bot


@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory) -> Iterator[Path]:
    """Keep records, outboxes and published FAQ of every test out of the user's data dir."""
    import os

    path = tmp_path_factory.mktemp("voicebot-data")
    old = os.environ.get("VOICEBOT_DATA_DIR")
    os.environ["VOICEBOT_DATA_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("VOICEBOT_DATA_DIR", None)
    else:
        os.environ["VOICEBOT_DATA_DIR"] = old
