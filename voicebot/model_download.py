"""Download and unpack speech models that are not distributed on PyPI (Vosk, for now).

Deployments fetch these once, usually at install time (`voicebot models download NAME`),
from the publisher or from a local mirror (`base_url`). The archive is checked before
anything is unpacked, and unpacking happens in a temporary directory that is renamed into
place, so an interrupted or tampered download never leaves a half-installed model that the
recogniser would later load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from voicebot.model_assets import (
    ProgressCallback,
    default_models_dir,
    exclusive_lock,
    terminal_progress,
)

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1024 * 1024
_TIMEOUT_SECONDS = 60
_ALLOWED_SCHEMES = frozenset({"http", "https", "file"})


class ModelDownloadError(RuntimeError):
    """A model could not be downloaded, verified or unpacked; nothing was installed."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A downloadable model archive and what it must look like."""

    name: str
    url: str
    unpacked_dir: str  # the archive's single top-level directory
    description: str
    sha256: str | None = None
    # Some publishers (Vosk) list only md5 and size; still enough to catch a broken download.
    md5: str | None = None
    size: int | None = None

    @property
    def archive_name(self) -> str:
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name


# sha256 of the Vosk archives is not published upstream and could not be verified here, so
# those fields stay None; md5 and size of the small model come from Vosk's model list
# (model-list.json), as copied by several projects. Pin a sha256 with `--sha256` once known.
MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="vosk-ja-small",
            url="https://alphacephei.com/vosk/models/vosk-model-small-ja-0.22.zip",
            unpacked_dir="vosk-model-small-ja-0.22",
            description="Vosk Japanese small model 0.22 (48 MB), for low-resource hosts",
            sha256=None,
            md5="0e3163dd62dfb0d823353718ac3cbf79",
            size=49_704_573,
        ),
        ModelSpec(
            name="vosk-ja",
            url="https://alphacephei.com/vosk/models/vosk-model-ja-0.22.zip",
            unpacked_dir="vosk-model-ja-0.22",
            description="Vosk Japanese big model 0.22 (~1 GB), more accurate, needs ~4 GB RAM",
        ),
    )
}


def model_path(
    name: str, dest_dir: Path | None = None, registry: Mapping[str, ModelSpec] = MODELS
) -> Path:
    """Where model `name` is (or would be) installed."""
    return _resolve_dest(dest_dir) / _spec(name, registry).unpacked_dir


def is_installed(
    name: str, dest_dir: Path | None = None, registry: Mapping[str, ModelSpec] = MODELS
) -> bool:
    """True if the model's directory exists; it only ever appears complete (atomic rename)."""
    return model_path(name, dest_dir, registry).is_dir()


def download_model(
    name: str,
    dest_dir: Path | None = None,
    *,
    base_url: str | None = None,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    allow_unverified: bool = False,
    registry: Mapping[str, ModelSpec] = MODELS,
) -> Path:
    """Download, verify and unpack model `name` into `dest_dir`; return its directory.

    `base_url` replaces the directory part of the registry URL (a mirror). `sha256`, when
    given, replaces the registry's checksums and size (a mirror or a re-published archive).
    A model with no known checksum is refused unless `allow_unverified` is set. If the model
    is already installed nothing is downloaded.
    """
    spec = _spec(name, registry)
    dest = _resolve_dest(dest_dir)
    expected_sha256 = _normalise_sha256(sha256) if sha256 is not None else spec.sha256
    expected_md5 = None if sha256 is not None else spec.md5
    expected_size = None if sha256 is not None else spec.size
    if expected_sha256 is None and expected_md5 is None and not allow_unverified:
        raise ModelDownloadError(
            f"no checksum is known for {name}; pass --sha256 HEX to pin the archive "
            "(or --allow-unverified to accept whatever the server sends)"
        )
    url = _archive_url(spec, base_url)
    target = dest / spec.unpacked_dir
    if target.is_dir():
        log.info("%s is already installed in %s", name, target)
        return target

    dest.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(dest / f".{spec.unpacked_dir}.lock"):
        if target.is_dir():  # another process finished while we waited
            return target
        archive = dest / f".{spec.archive_name}.part-{os.getpid()}"
        try:
            reporter = (
                progress if progress is not None else terminal_progress(f"Downloading {name}")
            )
            sha, md5, size = _fetch(url, archive, reporter, expected_size)
            _verify(name, url, sha, md5, size, expected_sha256, expected_md5, expected_size)
            if expected_sha256 is None and expected_md5 is None:
                log.warning("installed %s unverified; its sha256 is %s", name, sha)
            _unpack(archive, spec, dest)
        finally:
            archive.unlink(missing_ok=True)
    log.info("installed %s in %s", name, target)
    return target


def _spec(name: str, registry: Mapping[str, ModelSpec]) -> ModelSpec:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ModelDownloadError(f"unknown model {name!r}; known models: {known}") from None


def _resolve_dest(dest_dir: Path | None) -> Path:
    return Path(dest_dir).expanduser() if dest_dir is not None else default_models_dir()


def _normalise_sha256(value: str) -> str:
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelDownloadError(f"--sha256 must be 64 hex digits, got {value!r}")
    return digest


def _archive_url(spec: ModelSpec, base_url: str | None) -> str:
    url = spec.url if base_url is None else f"{base_url.rstrip('/')}/{spec.archive_name}"
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _ALLOWED_SCHEMES:
        raise ModelDownloadError(f"unsupported URL scheme {scheme!r} in {url}")
    return url


def _fetch(
    url: str, archive: Path, progress: ProgressCallback | None, expected_size: int | None
) -> tuple[str, str, int]:
    """Stream `url` into `archive`; return its sha256, md5 and size."""
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    done = 0
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else (expected_size or 0)
            with archive.open("wb") as out:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, max(total, done))
    except urllib.error.HTTPError as exc:
        raise ModelDownloadError(
            f"download failed: HTTP {exc.code} {exc.reason} for {url}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelDownloadError(f"download failed for {url}: {reason}") from exc
    return sha.hexdigest(), md5.hexdigest(), done


def _verify(
    name: str,
    url: str,
    sha: str,
    md5: str,
    size: int,
    expected_sha256: str | None,
    expected_md5: str | None,
    expected_size: int | None,
) -> None:
    problems = []
    if expected_size is not None and size != expected_size:
        problems.append(f"size {size} bytes, expected {expected_size}")
    if expected_sha256 is not None and sha != expected_sha256:
        problems.append(f"sha256 {sha}, expected {expected_sha256}")
    if expected_md5 is not None and md5 != expected_md5:
        problems.append(f"md5 {md5}, expected {expected_md5}")
    if problems:
        raise ModelDownloadError(
            f"refusing to install {name}: the archive from {url} has {'; '.join(problems)}"
        )


def _unpack(archive: Path, spec: ModelSpec, dest: Path) -> None:
    """Extract into a temporary directory, check the layout, then rename into place."""
    staging = dest / f".{spec.unpacked_dir}.unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            with zipfile.ZipFile(archive) as zipped:
                _check_members(zipped, spec)
                zipped.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise ModelDownloadError(
                f"{spec.name}: the download is not a valid zip ({exc})"
            ) from exc
        os.rename(staging / spec.unpacked_dir, dest / spec.unpacked_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_members(zipped: zipfile.ZipFile, spec: ModelSpec) -> None:
    names = zipped.namelist()
    if not names:
        raise ModelDownloadError(f"{spec.name}: the archive is empty")
    for member in names:
        path = PurePosixPath(member)
        if path.is_absolute() or ".." in path.parts or "\\" in member:
            raise ModelDownloadError(f"{spec.name}: unsafe path {member!r} in the archive")
        if path.parts[0] != spec.unpacked_dir:
            raise ModelDownloadError(
                f"{spec.name}: archive member {member!r} is outside the expected top-level "
                f"directory {spec.unpacked_dir!r}"
            )
