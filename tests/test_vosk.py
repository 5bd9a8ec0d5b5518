"""The Vosk recogniser with a real Kaldi model (Korean, from PyPI) on espeak-ng speech.

See korean_speech.py for why Korean, which words the model reliably gets, and why the tests
decode with feature dithering off.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from korean_speech import (
    FRAME_MS,
    MODEL_RATE,
    PHRASE,
    PHRASE_WORDS,
    deterministic_model,
    frames,
    korean_clip,
    korean_model_dir,
)

from voicebot.asr.base import RecognizerError, RecognizerStream, StreamingRecognizer, Transcript
from voicebot.asr.vosk import VoskRecognizer, find_vosk_model
from voicebot.model_download import MODELS, ModelDownloadError
from voicebot.resample import StreamResampler

LINE_RATE = 8000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deterministic_model(korean_model_dir(), tmp_path_factory.mktemp("vosk") / "ko")


@pytest.fixture(scope="module")
def korean(model_dir: Path) -> Iterator[VoskRecognizer]:
    recognizer = VoskRecognizer(model_dir, language="ko", join_words=False)
    yield recognizer
    recognizer.close()


async def stream_frames(recognizer: VoskRecognizer, chunks: list[np.ndarray]) -> tuple:
    """Feed `chunks` one at a time; return the partial texts and the final transcript."""
    stream = recognizer.stream()
    partials = []
    for chunk in chunks:
        text = await stream.accept(chunk)
        if text is not None:
            partials.append(text)
    return partials, await stream.finish()


def test_implements_the_streaming_protocol(korean: VoskRecognizer) -> None:
    assert isinstance(korean, StreamingRecognizer)
    assert isinstance(korean.stream(), RecognizerStream)
    assert korean.sample_rate == MODEL_RATE


def test_streaming_gives_growing_partials_and_a_final_with_the_words(
    korean: VoskRecognizer,
) -> None:
    clip = korean_clip(PHRASE)
    partials, final = asyncio.run(stream_frames(korean, frames(clip)))

    assert isinstance(final, Transcript)
    assert final.language == "ko"
    words = final.text.split()
    for word in PHRASE_WORDS:
        assert word in words, final.text
    # The text builds up while the audio arrives: word by word, in spoken order.
    non_empty = [p for p in partials if p]
    assert len(non_empty) >= 2
    assert len(non_empty[0].split()) < len(words)
    first_with = {w: next(i for i, p in enumerate(non_empty) if w in p) for w in PHRASE_WORDS}
    assert first_with["엄마"] < first_with["어제"]
    assert all(a != b for a, b in itertools.pairwise(partials))  # only changes are reported
    assert final.audio_ms == pytest.approx(1000 * len(clip) / MODEL_RATE)
    assert final.processing_ms > 0
    assert final.confidence is not None
    assert 0.0 < final.confidence <= 1.0


def test_streaming_final_equals_batch_transcript(korean: VoskRecognizer) -> None:
    clip = korean_clip(PHRASE)
    _, streamed = asyncio.run(stream_frames(korean, frames(clip)))
    batch = asyncio.run(korean.transcribe(clip))

    assert batch.text == streamed.text
    assert batch.audio_ms == streamed.audio_ms
    assert batch.confidence == streamed.confidence


def test_unawaited_accepts_are_decoded_in_call_order(korean: VoskRecognizer) -> None:
    clip = korean_clip(PHRASE)

    async def fire_all() -> Transcript:
        stream = korean.stream()
        # All frames are queued at once; two worker threads could otherwise reorder them.
        await asyncio.gather(*(stream.accept(chunk) for chunk in frames(clip)))
        return await stream.finish()

    fired, batch = asyncio.run(fire_all()), korean.transcribe_sync(clip)
    assert (fired.text, fired.confidence) == (batch.text, batch.confidence)


def test_interleaved_streams_on_one_model_stay_independent(korean: VoskRecognizer) -> None:
    first, second = korean_clip("엄마"), korean_clip("어제")
    alone = [korean.transcribe_sync(first).text, korean.transcribe_sync(second).text]
    assert "엄마" in alone[0].split()
    assert "어제" not in alone[0]
    assert "어제" in alone[1].split()
    assert "엄마" not in alone[1]

    async def interleave() -> list[Transcript]:
        streams = [korean.stream(), korean.stream()]
        for pair in itertools.zip_longest(frames(first), frames(second)):
            # Both calls' frames are in flight at once, on the recogniser's two workers.
            await asyncio.gather(
                *(
                    s.accept(chunk)
                    for s, chunk in zip(streams, pair, strict=True)
                    if chunk is not None
                )
            )
        return [await s.finish() for s in streams]

    together = asyncio.run(interleave())
    assert [t.text for t in together] == alone
    assert together[0].audio_ms == pytest.approx(1000 * len(first) / MODEL_RATE)
    assert together[1].audio_ms == pytest.approx(1000 * len(second) / MODEL_RATE)


def test_a_reused_decoder_carries_nothing_over(korean: VoskRecognizer, model_dir: Path) -> None:
    # `korean` hands each finished stream's decoder to the next; this one never reuses any.
    never_reuses = VoskRecognizer(model_dir, language="ko", join_words=False, max_idle_decoders=0)
    try:
        fresh = never_reuses.transcribe_sync(korean_clip(PHRASE))
        korean.transcribe_sync(korean_clip("어제"))  # the decoder has just heard other speech
        reused = korean.transcribe_sync(korean_clip(PHRASE))
    finally:
        never_reuses.close()
    assert (reused.text, reused.confidence) == (fresh.text, fresh.confidence)
    with pytest.raises(RecognizerError, match="closed"):
        asyncio.run(never_reuses.transcribe(korean_clip("엄마")))


def test_join_words_removes_the_spaces_between_words(model_dir: Path) -> None:
    # Japanese models emit space-separated words; the call loop wants plain Japanese text.
    recognizer = VoskRecognizer(model_dir, language="ko", join_words=True)
    try:
        clip = korean_clip(PHRASE)
        partials, final = asyncio.run(stream_frames(recognizer, frames(clip)))
    finally:
        recognizer.close()
    assert final.text.startswith("엄마어제")
    assert " " not in final.text
    assert all(" " not in p for p in partials)


def test_a_finished_stream_refuses_more_audio(korean: VoskRecognizer) -> None:
    async def misuse() -> None:
        stream = korean.stream()
        await stream.accept(korean_clip("엄마"))
        await stream.finish()
        with pytest.raises(RecognizerError, match="finished"):
            await stream.accept(korean_clip("엄마"))
        with pytest.raises(RecognizerError, match="finished"):
            await stream.finish()

    asyncio.run(misuse())


def test_empty_stream_gives_an_empty_transcript(korean: VoskRecognizer) -> None:
    async def nothing() -> tuple:
        stream = korean.stream()
        return await stream.accept(np.zeros(0, np.int16)), await stream.finish()

    partial, final = asyncio.run(nothing())
    assert partial is None
    assert final.text == ""
    assert final.audio_ms == 0.0


# -- sample rate: the recogniser takes the model's rate; the pipeline resamples ---------------
def test_a_rate_other_than_the_models_is_refused(model_dir: Path) -> None:
    recognizer = VoskRecognizer(model_dir, sample_rate=LINE_RATE)
    try:
        with pytest.raises(RecognizerError, match=r"expects 16000 Hz .* configured for 8000 Hz"):
            recognizer.load()
        with pytest.raises(RecognizerError, match="expects 16000 Hz"):
            asyncio.run(recognizer.transcribe(korean_clip("엄마", LINE_RATE)))
    finally:
        recognizer.close()


def test_phone_audio_is_recognised_after_the_stream_resampler(korean: VoskRecognizer) -> None:
    line_audio = korean_clip(PHRASE, LINE_RATE)
    resampler = StreamResampler(LINE_RATE, MODEL_RATE)
    chunks = [resampler.process(frame) for frame in frames(line_audio, LINE_RATE, FRAME_MS)]
    chunks.append(resampler.flush())
    _, final = asyncio.run(stream_frames(korean, chunks))
    # Narrowband audio costs this wideband model "어제"; "엄마" survives.
    assert "엄마" in final.text.split()
    assert final.audio_ms == pytest.approx(1000 * len(line_audio) / LINE_RATE, abs=1)


# -- model directories -------------------------------------------------------------------------
def test_missing_model_dir_names_the_path_and_the_download_command(tmp_path: Path) -> None:
    missing = tmp_path / "vosk-model-small-ja-0.22"
    recognizer = VoskRecognizer(missing)
    try:
        with pytest.raises(RecognizerError) as error:
            recognizer.load()
        assert str(missing) in str(error.value)
        assert "voicebot models download vosk-ja-small" in str(error.value)

        async def first_call() -> None:
            await recognizer.stream().accept(korean_clip("엄마"))

        with pytest.raises(RecognizerError, match="does not exist"):
            asyncio.run(first_call())
    finally:
        recognizer.close()


def test_a_directory_that_is_no_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a model\n")
    with pytest.raises(RecognizerError, match="not a Vosk model directory"):
        VoskRecognizer(tmp_path).load()


def test_a_corrupt_model_is_refused_without_crashing(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_bytes(b"truncated download")
    (tmp_path / "conf").mkdir()
    for conf in ("mfcc.conf", "model.conf"):
        (tmp_path / "conf" / conf).write_bytes((korean_model_dir() / "conf" / conf).read_bytes())
    with pytest.raises(RecognizerError, match="cannot load") as error:
        VoskRecognizer(tmp_path).load()
    assert str(tmp_path) in str(error.value)
    assert "voicebot models download" in str(error.value)


def test_find_vosk_model_looks_in_the_download_directory(tmp_path: Path) -> None:
    assert find_vosk_model(models_dir=tmp_path) is None

    unpacked = tmp_path / MODELS["vosk-ja-small"].unpacked_dir
    (unpacked / "am").mkdir(parents=True)
    assert find_vosk_model(models_dir=tmp_path) is None  # no final.mdl: not a model

    (unpacked / "am" / "final.mdl").write_bytes(b"")
    assert find_vosk_model(models_dir=tmp_path) == unpacked
    assert find_vosk_model("vosk-ja", models_dir=tmp_path) is None
    with pytest.raises(ModelDownloadError, match="unknown model"):
        find_vosk_model("vosk-xx", models_dir=tmp_path)


def test_find_vosk_model_defaults_to_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    unpacked = tmp_path / "models" / MODELS["vosk-ja"].unpacked_dir
    (unpacked / "am").mkdir(parents=True)
    (unpacked / "am" / "final.mdl").write_bytes(b"")
    assert find_vosk_model("vosk-ja") == unpacked
