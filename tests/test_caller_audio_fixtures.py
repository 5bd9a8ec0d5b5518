"""The recorded-caller fixtures (tests/data/audio/dev) match their manifest and the dev set.

They are made by tests/fixtures/make_caller_audio.py and committed; speech-loop tests rely on
every dev utterance being there in both voices, as 8 kHz μ-law phone audio.
"""

import csv
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import read_tsv

from faq.intents import ControlIntent
from voicebot.wavfile import FORMAT_MULAW, read_wav

AUDIO = Path(__file__).parent / "data" / "audio" / "dev"
VOICES = ("jf_alpha", "jm_kumo")


def manifest() -> list[dict[str, str]]:
    with (AUDIO / "manifest.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_manifest_lists_every_dev_utterance_in_both_voices() -> None:
    rows = manifest()
    assert list(rows[0]) == ["file", "voice", "utterance", "expected"]
    dev = read_tsv("dev-utterances.tsv")
    for voice in VOICES:
        listed = [(r["utterance"], r["expected"]) for r in rows if r["voice"] == voice]
        assert listed == dev, voice
    for number, row in enumerate(rows[: len(dev)], start=1):
        assert row["file"] == f"{row['voice']}/{number:03d}.wav"


def test_expected_labels_are_faq_entries_or_control_intents(faq) -> None:
    # Labels as in voicebot.evaluation: an FAQ id, control.<intent> or unknown.
    known = {e.id for e in faq} | {f"control.{i.value}" for i in ControlIntent} | {"unknown"}
    assert {r["expected"] for r in manifest()} <= known


@pytest.mark.parametrize("row", manifest(), ids=lambda r: r["file"])
def test_each_file_is_audible_phone_audio(row: dict[str, str]) -> None:
    path = AUDIO / row["file"]
    tag, channels, rate = struct.unpack_from("<HHI", path.read_bytes(), 20)
    assert (tag, channels, rate) == (FORMAT_MULAW, 1, 8000)
    audio = read_wav(path)
    samples = audio.samples.astype(np.float64)
    seconds = len(samples) / audio.sample_rate
    assert 1.0 < seconds < 15.0  # a spoken question plus 0.6 s of padding
    assert np.sqrt(np.mean(samples**2)) > 300
    # Band-limited like a phone line: almost nothing below 200 Hz.
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / audio.sample_rate)
    assert power[freqs < 200].sum() < 0.01 * power.sum()


def test_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in AUDIO.rglob("*") if p.is_file())
    assert total < 10 * 1024 * 1024
