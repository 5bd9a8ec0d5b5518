"""Writing G.711 WAV files (μ-law for the caller fixtures, A-law), checked with sox and read_wav."""

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from voicebot import g711
from voicebot.wavfile import FORMAT_ALAW, FORMAT_MULAW, read_wav, write_wav_g711, write_wav_ulaw


def tone(n: int, rate: int = 8000) -> np.ndarray:
    t = np.arange(n) / rate
    return np.rint(12000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@pytest.mark.parametrize("n", [8000, 8001])  # odd lengths need a pad byte
def test_round_trip_equals_the_codec(tmp_path: Path, n: int) -> None:
    path = tmp_path / "u.wav"
    samples = tone(n)
    write_wav_ulaw(path, samples, 8000)
    audio = read_wav(path)
    assert audio.sample_rate == 8000
    assert np.array_equal(audio.samples, g711.ulaw_decode(g711.ulaw_encode(samples)))
    assert path.stat().st_size % 2 == 0


def test_header_says_mulaw_mono_one_byte_per_sample(tmp_path: Path) -> None:
    path = tmp_path / "u.wav"
    write_wav_ulaw(path, tone(100), 8000)
    data = path.read_bytes()
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", data, 20)
    assert (tag, channels, rate, byte_rate, align, bits) == (FORMAT_MULAW, 1, 8000, 8000, 1, 8)
    assert data[38:42] == b"fact" and struct.unpack_from("<I", data, 46)[0] == 100


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_sox_reads_it_as_ulaw_with_the_same_samples(tmp_path: Path) -> None:
    path = tmp_path / "u.wav"
    samples = tone(4001)
    write_wav_ulaw(path, samples, 8000)
    info = subprocess.run(["soxi", str(path)], capture_output=True, text=True, check=True).stdout
    assert "u-law" in info and "4001 samples" in info
    pcm = tmp_path / "pcm.wav"
    subprocess.run(["sox", str(path), "-b", "16", "-e", "signed-integer", str(pcm)], check=True)
    assert np.array_equal(read_wav(pcm).samples, g711.ulaw_decode(g711.ulaw_encode(samples)))


def test_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_wav_ulaw(tmp_path / "f.wav", np.zeros(10, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match="mono"):
        write_wav_ulaw(tmp_path / "s.wav", np.zeros((10, 2), dtype=np.int16), 8000)
    with pytest.raises(ValueError, match="sample rate"):
        write_wav_ulaw(tmp_path / "r.wav", np.zeros(10, dtype=np.int16), 0)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_alaw_file_is_read_as_alaw_by_sox_and_read_wav(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    samples = tone(4001)
    write_wav_g711(path, samples, 8000, law="alaw")
    tag = struct.unpack_from("<H", path.read_bytes(), 20)[0]
    assert tag == FORMAT_ALAW
    info = subprocess.run(["soxi", str(path)], capture_output=True, text=True, check=True).stdout
    assert "A-law" in info and "4001 samples" in info
    expected = g711.alaw_decode(g711.alaw_encode(samples))
    assert np.array_equal(read_wav(path).samples, expected)
    with pytest.raises(ValueError, match="law"):
        write_wav_g711(tmp_path / "x.wav", samples, 8000, law="g722")
