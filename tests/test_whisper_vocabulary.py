"""The Japanese-only Whisper model: the model file, the token rule, the derived model and
the recogniser on it, with the real embedded model and real phone audio."""

import asyncio
import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from voicebot.asr.ct2_model_file import ModelFileError, read_model_file, write_model_file
from voicebot.asr.vocabulary import (
    ORIGINAL_IDS_FILE,
    RULE_VERSION,
    OutputVocabulary,
    is_japanese_piece,
    japanese_token_ids,
    restrict_model,
)
from voicebot.asr.whisper import WhisperRecognizer, faq_vocabulary_prompt
from voicebot.model_assets import (
    MARKER_FILE_NAME,
    WHISPER_BASE_SHA256,
    ModelAssetError,
    ensure_whisper_base,
    ensure_whisper_base_ja,
)
from voicebot.resample import resample
from voicebot.wavfile import read_wav

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def base_dir() -> Path:
    return ensure_whisper_base()


@pytest.fixture(scope="module")
def tokenizer(base_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(base_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def vocabulary(base_dir: Path) -> list[str]:
    return (base_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def ja_dir(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Path:
    calls: list[tuple[int, int]] = []
    target = tmp_path_factory.mktemp("models") / "whisper-base-ja"
    returned = ensure_whisper_base_ja(target, lambda d, t: calls.append((d, t)), base_dir=base_dir)
    assert returned == target
    assert calls and calls[-1][0] == calls[-1][1]  # progress reached the end
    return target


# --- the model file ----------------------------------------------------------------------


def test_model_file_round_trip_is_byte_identical(base_dir: Path, tmp_path: Path) -> None:
    model = read_model_file(base_dir / "model.bin")
    assert (model.version, model.spec_name) == (6, "WhisperSpec")
    assert ("decoder/projection/weight", "decoder/embeddings/weight") in model.aliases
    copy = tmp_path / "model.bin"
    with copy.open("wb") as out:
        write_model_file(model, out)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == WHISPER_BASE_SHA256


def test_broken_model_files_are_refused_clearly(base_dir: Path, tmp_path: Path) -> None:
    head = (base_dir / "model.bin").read_bytes()[:4096]
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(head)
    with pytest.raises(ModelFileError, match="past the end"):
        read_model_file(truncated)
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(head[:10])
    with pytest.raises(ModelFileError, match="truncated"):
        read_model_file(tiny)
    other_version = tmp_path / "v5.bin"
    other_version.write_bytes((5).to_bytes(4, "little") + head[4:])
    with pytest.raises(ModelFileError, match="binary version 5"):
        read_model_file(other_version)


# --- which tokens are kept ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [("税金", True), ("です", True), ("。", True), ("、", True), ("2024", True), ("QR", True)],
)
def test_japanese_and_short_ascii_pieces_are_kept(tokenizer, vocabulary, text, kept) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert all(is_japanese_piece(vocabulary[i]) == kept for i in ids)


@pytest.mark.parametrize("text", ["the", " government", "налог", "세금", "ضريبة"])
def test_other_languages_pieces_are_dropped(tokenizer, vocabulary, text) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert ids and not any(is_japanese_piece(vocabulary[i]) for i in ids)


def test_rule_keeps_specials_up_to_notimestamps(vocabulary) -> None:
    keep = japanese_token_ids(vocabulary)
    assert keep == sorted(keep)
    kept_tokens = {vocabulary[i] for i in keep}
    for special in ("<|endoftext|>", "<|startoftranscript|>", "<|ja|>", "<|transcribe|>"):
        assert special in kept_tokens
    assert vocabulary[keep[-1]] == "<|notimestamps|>"
    assert "<|0.00|>" not in kept_tokens
    assert 4000 < len(keep) < len(vocabulary) // 5  # most of the vocabulary is not Japanese
    with pytest.raises(ValueError, match="not a Whisper vocabulary"):
        japanese_token_ids(["a", "b"])


def _domain_texts(faq) -> list[str]:
    texts = []
    for entry in faq.entries:
        texts += [entry.title, entry.answer, *entry.questions, *entry.keywords]
    for name in ("dev", *(f"heldout{n}" for n in ("", 3, 4, 5, 6, 7, 8, 9))):
        with (DATA / f"{name}-utterances.tsv").open(encoding="utf-8") as f:
            texts += [row["utterance"] for row in csv.DictReader(f, delimiter="\t")]
    return texts


def test_every_japanese_text_of_the_domain_keeps_its_spelling(faq, tokenizer, vocabulary):
    """The FAQ and every caller phrasing tokenize, as Whisper would write them, into kept
    tokens only: the restriction removes no way of writing this domain's Japanese. Only
    Latin words (placeholders such as {city.name}, LINE) lose their long pieces."""
    kept = set(japanese_token_ids(vocabulary))
    lost = set()
    for text in _domain_texts(faq):
        for token_id in tokenizer.encode(text, add_special_tokens=False).ids:
            if token_id not in kept:
                lost.add(tokenizer.decode([token_id]))
    assert all(re.fullmatch(r"[A-Za-z]+", piece.strip()) for piece in lost), sorted(lost)


# --- the derived model -------------------------------------------------------------------


def test_derived_model_has_fewer_rows_and_maps_them_back(ja_dir, base_dir, vocabulary):
    original_ids = json.loads((ja_dir / ORIGINAL_IDS_FILE).read_text())
    assert original_ids == japanese_token_ids(vocabulary)
    model = read_model_file(ja_dir / "model.bin")
    assert model.variable("decoder/embeddings/weight").shape == (len(original_ids), 512)
    rows = (ja_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    assert rows == [vocabulary[i] for i in original_ids]
    config = json.loads((ja_dir / "config.json").read_text())
    base_config = json.loads((base_dir / "config.json").read_text())
    assert [original_ids[r] for r in config["lang_ids"]] == base_config["lang_ids"]
    assert (ja_dir / "tokenizer.json").read_bytes() == (base_dir / "tokenizer.json").read_bytes()
    marker = json.loads((ja_dir / MARKER_FILE_NAME).read_text())
    assert marker["rule"] == RULE_VERSION and marker["source_sha256"] == WHISPER_BASE_SHA256
    assert not list(ja_dir.parent.glob(".*tmp-*"))


def test_derived_model_is_reused_then_rebuilt_when_the_rule_changes(ja_dir, base_dir):
    calls: list[tuple[int, int]] = []
    before = (ja_dir / "model.bin").stat()
    assert ensure_whisper_base_ja(ja_dir, lambda d, t: calls.append((d, t)), base_dir=base_dir)
    assert calls == [] and (ja_dir / "model.bin").stat().st_ino == before.st_ino
    marker = json.loads((ja_dir / MARKER_FILE_NAME).read_text())
    (ja_dir / MARKER_FILE_NAME).write_text(json.dumps({**marker, "rule": RULE_VERSION - 1}))
    ensure_whisper_base_ja(ja_dir, lambda d, t: calls.append((d, t)), base_dir=base_dir)
    assert calls and json.loads((ja_dir / MARKER_FILE_NAME).read_text())["rule"] == RULE_VERSION


def test_deriving_from_a_broken_model_fails_clearly_and_leaves_nothing(tmp_path, base_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        (broken / name).write_bytes((base_dir / name).read_bytes())
    (broken / "model.bin").write_bytes((base_dir / "model.bin").read_bytes()[:100_000])
    (broken / MARKER_FILE_NAME).write_text(json.dumps({"sha256": "x"}))
    target = tmp_path / "ja"
    with pytest.raises(ModelAssetError, match="past the end"):
        ensure_whisper_base_ja(target, base_dir=broken)
    assert not target.exists() and not list(tmp_path.glob(".*tmp-*"))


def test_an_already_restricted_model_is_not_restricted_again(ja_dir, tmp_path):
    with pytest.raises(ValueError, match="already restricted"):
        restrict_model(ja_dir, tmp_path / "again")


def test_output_vocabulary_translates_both_ways(ja_dir, base_dir):
    identity = OutputVocabulary.of_model(base_dir)
    assert not identity.restricted and identity.to_model([5, 50258]) == [5, 50258]
    restricted = OutputVocabulary.of_model(ja_dir)
    assert restricted.restricted
    sot = 50258  # <|startoftranscript|> in the tokenizer
    row = restricted.to_model([sot])[0]
    assert row < sot and restricted.to_original([row]) == [sot]
    assert restricted.to_model([2463, sot], drop_missing=True) == [row]  # 2463 = " government"
    with pytest.raises(KeyError):
        restricted.to_model([2463])


# --- recognition on it -------------------------------------------------------------------


def _clip(name: str) -> np.ndarray:
    audio = read_wav(DATA / "audio" / "dev" / name)
    return resample(audio.samples, audio.sample_rate, 16000)


@pytest.mark.parametrize("clip", ["jf_alpha/071.wav", "jm_kumo/052.wav", "jf_alpha/020.wav"])
def test_restricted_model_hears_what_the_full_model_hears(faq, base_dir, ja_dir, clip):
    samples = _clip(clip)
    heard = {}
    for name, directory in (("full", base_dir), ("japanese", ja_dir)):
        rec = WhisperRecognizer(directory, initial_prompt=faq_vocabulary_prompt(faq))
        heard[name] = asyncio.run(rec.transcribe(samples))
        rec.close()
    assert heard["japanese"].text == heard["full"].text
    assert heard["japanese"].text and not re.search(r"[A-Za-z]{3,}", heard["japanese"].text)


def test_embedded_default_is_the_japanese_model(monkeypatch, tmp_path, base_dir):
    from voicebot.bot import make_recognizer
    from voicebot.config import Settings

    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("voicebot.model_assets.ensure_whisper_base", lambda *a, **k: base_dir)
    settings = Settings()
    rec = make_recognizer(settings, None)
    assert rec.vocabulary == "japanese"
    rec.load()
    assert rec._token_map.restricted
    rec.close()
    settings.asr.vocabulary = "full"
    full = make_recognizer(settings, None)
    full.load()
    assert not full._token_map.restricted
    full.close()
    with pytest.raises(ValueError, match="vocabulary"):
        WhisperRecognizer(vocabulary="english")
