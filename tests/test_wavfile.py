"""Tests for WAV reading and writing, with files produced by sox and the stdlib `wave` module.

The reference signal is written with `wave` (an independent writer), converted by sox into
each format, and decoded by `read_wav`. Where a format is lossy, sox's own decoding of the
same file (back to 16-bit, read with `wave`) is the expected result.
"""

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot import g711
from voicebot.wavfile import WavAudio, WavFormatError, parse_wav, read_wav, write_wav

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (apt-get install sox)"
)

REF_RATE = 16000


def reference_signal(rate: int = REF_RATE, seconds: float = 0.5, seed: int = 7) -> np.ndarray:
    """Speech-band tones plus noise, loud enough to use most of the int16 range."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    x = (
        9000 * np.sin(2 * np.pi * 440 * t)
        + 6000 * np.sin(2 * np.pi * 1230 * t + 1)
        + 2000 * rng.standard_normal(len(t))
    )
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def write_with_stdlib(path: Path, frames: np.ndarray, rate: int) -> None:
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())


def read_with_stdlib(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels()), w.getframerate(), w.getnchannels()


def sox(*args: str | Path) -> None:
    subprocess.run(["sox", "-D", *map(str, args)], check=True, capture_output=True)


def sox_decode_to_pcm16(src: Path, dest: Path) -> np.ndarray:
    """Let sox decode `src` to 16-bit PCM and return its samples as (frames, channels)."""
    sox(src, "-b", "16", "-e", "signed-integer", dest)
    return read_with_stdlib(dest)[0]


def format_tag(path: Path) -> int:
    return struct.unpack_from("<H", path.read_bytes(), 20)[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wav")


@pytest.fixture(scope="module")
def reference_file(workdir: Path) -> Path:
    path = workdir / "reference.wav"
    write_with_stdlib(path, reference_signal(), REF_RATE)
    return path


def test_reads_16_bit_pcm_exactly(reference_file: Path) -> None:
    audio = read_wav(reference_file)
    assert isinstance(audio, WavAudio)
    assert audio.sample_rate == REF_RATE
    assert audio.samples.dtype == np.int16
    np.testing.assert_array_equal(audio.samples, reference_signal())
    samples, rate = audio  # unpacks like a tuple
    assert rate == REF_RATE
    assert len(samples) == 8000


@pytest.mark.parametrize(
    ("sox_args", "expected_tag"),
    [
        (["-b", "24"], 0xFFFE),  # sox writes WAVE_FORMAT_EXTENSIBLE above 16 bits
        (["-b", "32", "-e", "signed-integer"], 0xFFFE),
        (["-b", "32", "-e", "floating-point"], 3),
        (["-b", "64", "-e", "floating-point"], 3),
    ],
    ids=["pcm24-extensible", "pcm32-extensible", "float32", "float64"],
)
def test_wider_formats_decode_back_to_the_exact_16_bit_source(
    reference_file: Path, workdir: Path, sox_args: list[str], expected_tag: int
) -> None:
    path = workdir / f"wide-{'-'.join(sox_args)}.wav"
    sox(reference_file, *sox_args, path)
    assert format_tag(path) == expected_tag
    audio = read_wav(path)
    assert audio.sample_rate == REF_RATE
    np.testing.assert_array_equal(audio.samples, reference_signal())


@pytest.mark.parametrize(
    ("sox_args", "expected_tag", "max_error"),
    [
        (["-b", "8", "-e", "unsigned-integer"], 1, 128),
        (["-e", "u-law"], 7, 1024),
        (["-e", "a-law"], 6, 1024),
    ],
    ids=["pcm8", "mulaw", "alaw"],
)
def test_lossy_formats_match_sox_decoding(
    reference_file: Path, workdir: Path, sox_args: list[str], expected_tag: int, max_error: int
) -> None:
    path = workdir / f"lossy-{sox_args[-1]}.wav"
    sox(reference_file, "-r", "8000", *sox_args, path)
    assert format_tag(path) == expected_tag
    audio = read_wav(path)
    assert audio.sample_rate == 8000
    expected = sox_decode_to_pcm16(path, workdir / f"lossy-{sox_args[-1]}-decoded.wav")
    np.testing.assert_array_equal(audio.samples, expected[:, 0])
    # And the decoded audio is close to the source at 8 kHz (resampled by sox, 16-bit).
    sox(reference_file, "-r", "8000", workdir / "ref8k-pcm.wav")
    source = read_with_stdlib(workdir / "ref8k-pcm.wav")[0][:, 0]
    assert np.max(np.abs(audio.samples.astype(np.int32) - source)) <= max_error


def test_mulaw_file_bytes_decode_with_the_g711_table(reference_file: Path, workdir: Path) -> None:
    path = workdir / "mulaw-raw-check.wav"
    sox(reference_file, "-r", "8000", "-e", "u-law", path)
    data = path.read_bytes()
    codes = data[data.index(b"data") + 8 :]
    np.testing.assert_array_equal(read_wav(path).samples, g711.ulaw_decode(codes))


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
def test_any_rate_is_reported_and_decoded(reference_file: Path, workdir: Path, rate: int) -> None:
    path = workdir / f"rate-{rate}.wav"
    sox(reference_file, "-r", str(rate), path)
    audio = read_wav(path)
    assert audio.sample_rate == rate
    assert len(audio.samples) == round(0.5 * rate)
    np.testing.assert_array_equal(audio.samples, read_with_stdlib(path)[0][:, 0])


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_any_rate_in_float_and_24_bit(reference_file: Path, workdir: Path, rate: int) -> None:
    for args in (["-e", "floating-point", "-b", "32"], ["-b", "24"]):
        path = workdir / f"rate-{rate}-{args[-1]}.wav"
        sox(reference_file, "-r", str(rate), *args, path)
        audio = read_wav(path)
        assert audio.sample_rate == rate
        # sox decoding to 16 bits rounds the same way up to one LSB.
        expected = sox_decode_to_pcm16(path, workdir / f"rate-{rate}-{args[-1]}-16.wav")
        assert np.max(np.abs(audio.samples.astype(np.int32) - expected[:, 0])) <= 1


def make_stereo(workdir: Path, sox_args: list[str]) -> tuple[Path, np.ndarray, np.ndarray]:
    left = reference_signal(seed=1)
    right = (reference_signal(seed=2) // 2)[::-1].copy()
    left_path, right_path = workdir / "left.wav", workdir / "right.wav"
    write_with_stdlib(left_path, left, REF_RATE)
    write_with_stdlib(right_path, right, REF_RATE)
    path = workdir / f"stereo-{'-'.join(sox_args) or 'pcm16'}.wav"
    sox("-M", left_path, right_path, *sox_args, path)
    return path, left, right


@pytest.mark.parametrize(
    "sox_args",
    [[], ["-b", "24"], ["-e", "floating-point", "-b", "32"]],
    ids=["pcm16", "pcm24", "float32"],
)
def test_stereo_is_downmixed_to_the_channel_average(workdir: Path, sox_args: list[str]) -> None:
    path, left, right = make_stereo(workdir, sox_args)
    audio = read_wav(path)
    expected = (left.astype(np.int32) + right.astype(np.int32)) / 2
    assert np.max(np.abs(audio.samples - expected)) <= 0.5


def test_stereo_mulaw_is_downmixed(workdir: Path) -> None:
    path, *_ = make_stereo(workdir, ["-r", "8000", "-e", "u-law"])
    decoded = sox_decode_to_pcm16(path, workdir / "stereo-mulaw-16.wav").astype(np.int32)
    expected = (decoded[:, 0] + decoded[:, 1]) / 2
    assert np.max(np.abs(read_wav(path).samples - expected)) <= 0.5


def test_four_channels_extensible(reference_file: Path, workdir: Path) -> None:
    path = workdir / "quad.wav"
    sox(reference_file, "-c", "4", path)  # sox duplicates mono into all four channels
    assert format_tag(path) == 0xFFFE
    np.testing.assert_array_equal(read_wav(path).samples, reference_signal())


def test_streamed_header_with_placeholder_size_reads_to_end(
    reference_file: Path, workdir: Path
) -> None:
    # sox reading raw audio of unknown length and writing to a pipe cannot seek back, so the
    # header keeps a placeholder data size.
    raw = reference_signal().astype("<i2").tobytes()
    raw_in = ["-t", "raw", "-r", str(REF_RATE), "-e", "signed", "-b", "16", "-c", "1", "-"]
    piped = subprocess.run(
        ["sox", "-D", *raw_in, "-t", "wav", "-"], input=raw, check=True, capture_output=True
    ).stdout
    assert struct.unpack_from("<I", piped, 40)[0] == 0x7FFFF000
    path = workdir / "piped.wav"
    path.write_bytes(piped)
    np.testing.assert_array_equal(read_wav(path).samples, reference_signal())


def test_skips_other_chunks_and_honours_odd_chunk_padding(reference_file: Path) -> None:
    data = reference_file.read_bytes()
    fmt_and_data = data[12:]
    junk = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd size plus pad byte
    rebuilt = b"RIFF" + struct.pack("<I", 4 + len(junk) + len(fmt_and_data)) + b"WAVE"
    audio = parse_wav(rebuilt + junk + fmt_and_data, name="with-list.wav")
    np.testing.assert_array_equal(audio.samples, reference_signal())


def test_data_before_fmt_is_accepted(reference_file: Path) -> None:
    data = reference_file.read_bytes()
    fmt_chunk, data_chunk = data[12:36], data[36:]
    swapped = data[:12] + data_chunk + fmt_chunk
    np.testing.assert_array_equal(parse_wav(swapped).samples, reference_signal())


def test_empty_data_chunk_gives_no_samples(workdir: Path) -> None:
    path = workdir / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.int16), 8000)
    audio = read_wav(path)
    assert audio.samples.shape == (0,)
    assert audio.sample_rate == 8000


# --- malformed input -------------------------------------------------------------------


def pcm16_wav(rate: int = 8000, n: int = 16, channels: int = 1) -> bytearray:
    body = np.arange(n * channels, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return bytearray(
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(body))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(body))
        + body
    )


def test_valid_handmade_file_parses() -> None:
    audio = parse_wav(bytes(pcm16_wav()), name="ok.wav")
    assert audio.samples.tolist() == list(range(16))


def _patched(offset: int, fmt: str, value: int) -> bytes:
    data = pcm16_wav()
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def _odd_data_size() -> bytes:
    """16-bit data whose chunk (consistently) holds 31 bytes: half a sample at the end."""
    data = pcm16_wav()
    struct.pack_into("<I", data, 40, 31)
    return bytes(data[:-1])


MALFORMED = {
    "empty": (b"", "too short"),
    "not-riff": (b"OggS" + bytes(40), "not a RIFF file"),
    "riff-not-wave": (b"RIFF" + struct.pack("<I", 4) + b"AVI " + bytes(8), "not WAVE"),
    "rifx": (b"RIFX" + bytes(4) + b"WAVE", "RIFX"),
    "truncated-data": (bytes(pcm16_wav())[:-6], "truncated"),
    "truncated-fmt": (bytes(pcm16_wav())[:30], "truncated"),
    "truncated-chunk-header": (bytes(pcm16_wav())[:16], "truncated chunk header"),
    "no-fmt": (bytes(pcm16_wav()).replace(b"fmt ", b"junk"), "no 'fmt ' chunk"),
    "no-data": (bytes(pcm16_wav())[: 44 - 8], "no 'data' chunk"),
    "fmt-too-short": (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + 8)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 8)
        + bytes(8),
        "at least 16 needed",
    ),
    "mp3-codec": (_patched(20, "<H", 0x0055), "MPEG Layer 3"),
    "unknown-codec": (_patched(20, "<H", 0x1234), "format tag 0x1234"),
    "zero-channels": (_patched(22, "<H", 0), "zero channels"),
    "zero-rate": (_patched(24, "<I", 0), "sample rate 0"),
    "bad-block-align": (_patched(32, "<H", 3), "block align 3 does not match"),
    "odd-data-size": (_odd_data_size(), "not a whole number"),
    "pcm-40-bit": (_patched(34, "<H", 40), "sample size"),
    "pcm-0-bit": (_patched(34, "<H", 0), "sample size"),
}


@pytest.mark.parametrize(("data", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_wav_format_error(data: bytes, message: str) -> None:
    with pytest.raises(WavFormatError, match=message) as excinfo:
        parse_wav(data, name="bad-prompt.wav")
    assert str(excinfo.value).startswith("bad-prompt.wav: ")


@pytest.mark.parametrize(
    ("encoding", "label"), [("ima-adpcm", "IMA ADPCM"), ("gsm-full-rate", "0x0031")]
)
def test_real_unsupported_codecs_name_the_file_and_codec(
    reference_file: Path, workdir: Path, encoding: str, label: str
) -> None:
    path = workdir / f"{encoding}.wav"
    sox(reference_file, "-r", "8000", "-e", encoding, path)
    with pytest.raises(WavFormatError, match=label) as excinfo:
        read_wav(path)
    assert str(path) in str(excinfo.value)


def test_unknown_extensible_subformat_is_rejected(reference_file: Path, workdir: Path) -> None:
    path = workdir / "ext.wav"
    sox(reference_file, "-b", "24", path)
    data = bytearray(path.read_bytes())
    data[20 + 24 + 2 : 20 + 24 + 16] = bytes(14)  # break the GUID tail
    with pytest.raises(WavFormatError, match="sub-format"):
        parse_wav(bytes(data), name="ext.wav")


def test_directory_is_a_wav_format_error(tmp_path: Path) -> None:
    with pytest.raises(WavFormatError, match="directory"):
        read_wav(tmp_path)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "nope.wav")


def test_wav_format_error_is_a_value_error() -> None:
    assert issubclass(WavFormatError, ValueError)


# --- writing ----------------------------------------------------------------------------


def test_write_mono_is_readable_by_stdlib_and_sox(workdir: Path) -> None:
    x = reference_signal(rate=8000)
    path = workdir / "written-mono.wav"
    write_wav(path, x, 8000)
    frames, rate, channels = read_with_stdlib(path)
    assert (rate, channels) == (8000, 1)
    np.testing.assert_array_equal(frames[:, 0], x)
    info = subprocess.run(["soxi", str(path)], check=True, capture_output=True, text=True).stdout
    assert "Channels       : 1" in info
    assert "16-bit Signed Integer PCM" in info
    np.testing.assert_array_equal(read_wav(path).samples, x)


def test_write_stereo_keeps_left_and_right(workdir: Path) -> None:
    caller = reference_signal(seed=3)
    bot = (reference_signal(seed=4) // 3).astype(np.int16)
    path = workdir / "call-recording.wav"
    write_wav(path, np.column_stack([caller, bot]), REF_RATE)
    frames, rate, channels = read_with_stdlib(path)
    assert (rate, channels) == (REF_RATE, 2)
    np.testing.assert_array_equal(frames[:, 0], caller)
    np.testing.assert_array_equal(frames[:, 1], bot)
    # sox agrees on which channel is which.
    sox(path, workdir / "left-only.wav", "remix", "1")
    np.testing.assert_array_equal(read_with_stdlib(workdir / "left-only.wav")[0][:, 0], caller)


def test_write_big_endian_input_is_stored_little_endian(workdir: Path) -> None:
    path = workdir / "be.wav"
    write_wav(path, np.array([1, -2, 300], dtype=">i2"), 8000)
    assert path.read_bytes()[44:] == bytes([1, 0, 0xFE, 0xFF, 0x2C, 0x01])


@pytest.mark.parametrize(
    ("samples", "rate", "error"),
    [
        (np.zeros(4, dtype=np.float32), 8000, TypeError),
        (np.zeros((2, 2, 2), dtype=np.int16), 8000, ValueError),
        (np.zeros((4, 0), dtype=np.int16), 8000, ValueError),
        (np.zeros(4, dtype=np.int16), 0, ValueError),
        (np.zeros(4, dtype=np.int16), 8000.0, ValueError),
    ],
)
def test_write_rejects_bad_arguments(tmp_path: Path, samples, rate, error) -> None:
    with pytest.raises(error):
        write_wav(tmp_path / "x.wav", samples, rate)
    assert not (tmp_path / "x.wav").exists()
