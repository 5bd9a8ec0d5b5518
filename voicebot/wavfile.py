"""Read any common WAV file as mono int16, and write int16 WAV files.

Prompts, test calls and recordings come from many tools: telephony exports are μ-law or
A-law, editors write 24-bit or float, TTS engines 22.05-48 kHz. The stdlib `wave` module
only reads integer PCM, so this module parses the RIFF chunks itself and normalises
everything to what the pipeline uses: 16-bit mono samples plus their sample rate.

Anything it cannot decode raises `WavFormatError` naming the file and the problem, so a bad
prompt file fails loudly at start-up rather than playing noise to a caller.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from voicebot import g711

FORMAT_PCM = 0x0001
FORMAT_IEEE_FLOAT = 0x0003
FORMAT_ALAW = 0x0006
FORMAT_MULAW = 0x0007
FORMAT_EXTENSIBLE = 0xFFFE

# WAVE_FORMAT_EXTENSIBLE sub-format GUIDs are the format tag followed by this fixed tail.
_EXTENSIBLE_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

# Container sizes (bytes per sample) each supported codec may use.
_CONTAINER_BYTES = {
    FORMAT_PCM: (1, 2, 3, 4),
    FORMAT_IEEE_FLOAT: (4, 8),
    FORMAT_ALAW: (1,),
    FORMAT_MULAW: (1,),
}

# Names of common codecs we do not decode, for a helpful error message.
_UNSUPPORTED_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG audio",
    0x0055: "MPEG Layer 3",
    0x0064: "G.726 ADPCM",
    0x0160: "Windows Media Audio",
    0x0161: "Windows Media Audio",
    0x1610: "AAC",
}

# Data sizes that streaming writers put in the header when they cannot seek back to fix it
# (sox writes 0x7FFFF000, others 0xFFFFFFFF). Such a chunk runs to the end of the file.
_STREAMING_PLACEHOLDER_SIZES = frozenset({0x7FFFF000, 0xFFFFFFFF})


class WavFormatError(ValueError):
    """The file is not a WAV file this module can decode; the message says which and why."""


class WavAudio(NamedTuple):
    """Decoded audio: mono int16 samples and their sample rate."""

    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True, slots=True)
class _Format:
    codec: int  # format tag after resolving WAVE_FORMAT_EXTENSIBLE
    channels: int
    sample_rate: int
    block_align: int
    bits_per_sample: int

    @property
    def container_bytes(self) -> int:
        return self.block_align // self.channels


def read_wav(path: str | os.PathLike[str]) -> WavAudio:
    """Read a WAV file and return it as mono int16 (channels averaged) with its sample rate."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError as exc:
        raise WavFormatError(f"{path}: is a directory, not a WAV file") from exc
    return parse_wav(data, name=str(path))


def parse_wav(data: bytes, name: str = "<memory>") -> WavAudio:
    """Decode WAV file contents already in memory; `name` is used in error messages."""
    chunks = _find_chunks(data, name)
    if "fmt " not in chunks:
        raise WavFormatError(f"{name}: no 'fmt ' chunk, so the audio format is unknown")
    fmt = _parse_fmt(chunks["fmt "], name)
    if "data" not in chunks:
        raise WavFormatError(f"{name}: no 'data' chunk, so there is no audio")
    frames = _decode(chunks["data"], fmt, name)
    return WavAudio(_downmix(frames), fmt.sample_rate)


def _find_chunks(data: bytes | memoryview, name: str) -> dict[str, memoryview]:
    """Walk the RIFF chunk list until both 'fmt ' and 'data' have been seen."""
    if len(data) < 12:
        raise WavFormatError(f"{name}: only {len(data)} bytes, too short to be a WAV file")
    magic, _, form = struct.unpack_from("<4sI4s", data, 0)
    if magic == b"RIFX":
        raise WavFormatError(f"{name}: big-endian RIFX files are not supported")
    if magic == b"RF64":
        raise WavFormatError(f"{name}: RF64 (>4 GB WAV) files are not supported")
    if magic != b"RIFF":
        raise WavFormatError(f"{name}: not a RIFF file (starts with {bytes(data[:4])!r})")
    if form != b"WAVE":
        raise WavFormatError(f"{name}: RIFF file but not WAVE (form type {form!r})")

    view = memoryview(data)
    chunks: dict[str, memoryview] = {}
    offset = 12
    while offset < len(data) and not ("fmt " in chunks and "data" in chunks):
        if len(data) - offset < 8:
            raise WavFormatError(
                f"{name}: truncated chunk header at byte {offset} "
                f"({len(data) - offset} bytes left, 8 needed)"
            )
        raw_id, size = struct.unpack_from("<4sI", data, offset)
        chunk_id = raw_id.decode("latin-1")
        body_start = offset + 8
        remaining = len(data) - body_start
        if size > remaining:
            if chunk_id == "data" and size in _STREAMING_PLACEHOLDER_SIZES:
                size = remaining
            else:
                raise WavFormatError(
                    f"{name}: chunk {chunk_id!r} at byte {offset} declares {size} bytes "
                    f"but only {remaining} remain (file is truncated)"
                )
        chunks.setdefault(chunk_id, view[body_start : body_start + size])
        offset = body_start + size + (size & 1)  # chunks are padded to an even length
    return chunks


def _parse_fmt(body: memoryview, name: str) -> _Format:
    if len(body) < 16:
        raise WavFormatError(f"{name}: 'fmt ' chunk is {len(body)} bytes, at least 16 needed")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
    codec = tag
    if tag == FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise WavFormatError(
                f"{name}: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {len(body)} bytes, 40 needed"
            )
        codec, guid_tail = struct.unpack_from("<H14s", body, 24)
        if guid_tail != _EXTENSIBLE_GUID_TAIL:
            raise WavFormatError(
                f"{name}: unsupported WAVE_FORMAT_EXTENSIBLE sub-format {bytes(body[24:40]).hex()}"
            )
    if codec not in _CONTAINER_BYTES:
        label = _UNSUPPORTED_NAMES.get(codec, "unknown")
        raise WavFormatError(
            f"{name}: unsupported codec {label} (format tag 0x{codec:04X}); "
            "supported are PCM, IEEE float, A-law and μ-law"
        )
    if channels == 0:
        raise WavFormatError(f"{name}: header says zero channels")
    if rate == 0:
        raise WavFormatError(f"{name}: header says sample rate 0")
    container = (bits + 7) // 8
    if container not in _CONTAINER_BYTES[codec]:
        raise WavFormatError(
            f"{name}: unsupported sample size for format tag 0x{codec:04X}: {bits} bits"
        )
    if block_align != channels * container:
        raise WavFormatError(
            f"{name}: block align {block_align} does not match "
            f"{channels} channel(s) of {bits}-bit samples"
        )
    return _Format(codec, channels, rate, block_align, bits)


def _decode(body: memoryview, fmt: _Format, name: str) -> np.ndarray:
    """Decode the data chunk to int16 (n, channels), or float32 in int16 units if wider."""
    if len(body) % fmt.block_align:
        raise WavFormatError(
            f"{name}: data chunk has {len(body)} bytes, not a whole number of "
            f"{fmt.block_align}-byte sample frames"
        )
    raw = np.frombuffer(body, dtype=np.uint8)
    width = fmt.container_bytes
    if fmt.codec == FORMAT_MULAW:
        samples = g711.ulaw_decode(raw)
    elif fmt.codec == FORMAT_ALAW:
        samples = g711.alaw_decode(raw)
    elif fmt.codec == FORMAT_IEEE_FLOAT:
        floats = np.frombuffer(body, dtype="<f4" if width == 4 else "<f8")
        floats = np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0)
        samples = (floats * 32768.0).astype(np.float32)
    elif width == 1:  # 8-bit PCM is unsigned
        samples = ((raw.astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 2:
        samples = np.frombuffer(body, dtype="<i2")
    elif width == 3:
        triplets = raw.reshape(-1, 3).astype(np.int32)
        wide = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
        wide = np.where(wide & 0x800000, wide - 0x1000000, wide)  # sign-extend 24 bits
        samples = wide.astype(np.float32) / np.float32(256.0)
    else:
        samples = np.frombuffer(body, dtype="<i4").astype(np.float32) / np.float32(65536.0)
    return samples.reshape(-1, fmt.channels)


def _downmix(frames: np.ndarray) -> np.ndarray:
    """Average the channels and return native int16 mono samples."""
    if frames.dtype.kind == "i" and frames.shape[1] == 1:
        return frames[:, 0].astype(np.int16)  # copies, and fixes the byte order
    mono = frames.astype(np.float32).mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    return np.clip(np.rint(mono), -32768, 32767).astype(np.int16)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 samples as a 16-bit PCM WAV file.

    `samples` is 1-D for mono or 2-D (frames, channels), e.g. a call recording with the
    caller on the left and the bot on the right: `np.column_stack([caller, bot])`.
    """
    array = np.asarray(samples)
    if array.dtype.kind != "i" or array.dtype.itemsize != 2:
        raise TypeError(f"write_wav needs int16 samples, got {array.dtype}")
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            f"write_wav needs shape (frames,) or (frames, channels), got {array.shape}"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"write_wav needs a positive int sample rate, got {sample_rate!r}")
    channels = array.shape[1]
    pcm = np.ascontiguousarray(array, dtype="<i2").tobytes()
    if len(pcm) > 0xFFFFFFFF - 36:
        raise ValueError(f"{path}: {len(pcm)} bytes of audio do not fit in a RIFF WAV file")
    block_align = 2 * channels
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        FORMAT_PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        16,
        b"data",
        len(pcm),
    )
    with open(path, "wb") as out:
        out.write(header)
        out.write(pcm)


def write_wav_ulaw(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono samples as a G.711 μ-law WAV file (format tag 7), as phones send it.

    Test fixtures that stand in for callers should sound like a phone line, and μ-law is what
    telephony recorders export; this also halves their size.
    """
    write_wav_g711(path, samples, sample_rate, law="ulaw")


def write_wav_g711(
    path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int, law: str = "ulaw"
) -> None:
    """Write int16 mono samples as a G.711 WAV file: μ-law (tag 7, North America and Japan)
    or A-law (tag 6, most other networks, and what some PBXs record in).

    Laid out as sox does: an 18-byte 'fmt ' chunk, a 'fact' chunk with the sample count
    (required for non-PCM formats) and the data, padded to an even length.
    """
    encoders = {"ulaw": (g711.ulaw_encode, FORMAT_MULAW), "alaw": (g711.alaw_encode, FORMAT_ALAW)}
    if law not in encoders:
        raise ValueError(f"law must be 'ulaw' or 'alaw', not {law!r}")
    encode, format_tag = encoders[law]
    array = np.asarray(samples)
    if array.dtype.kind != "i" or array.dtype.itemsize != 2:
        raise TypeError(f"write_wav_g711 needs int16 samples, got {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"write_wav_g711 needs mono 1-D samples, got shape {array.shape}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"write_wav_g711 needs a positive int sample rate, got {sample_rate!r}")
    codes = encode(array)
    pad = b"\x00" if len(codes) % 2 else b""
    riff_size = 4 + (8 + 18) + (8 + 4) + (8 + len(codes) + len(pad))
    if riff_size > 0xFFFFFFFF:
        raise ValueError(f"{path}: {len(codes)} bytes of audio do not fit in a RIFF WAV file")
    header = struct.pack(
        "<4sI4s4sIHHIIHHH4sII4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        18,
        format_tag,
        1,
        sample_rate,
        sample_rate,  # bytes per second: one byte per sample
        1,
        8,
        0,  # cbSize: no extra format bytes
        b"fact",
        4,
        len(codes),
        b"data",
        len(codes),
    )
    with open(path, "wb") as out:
        out.write(header)
        out.write(codes)
        out.write(pad)
