"""Tests for model downloads against a local HTTP server serving archives built here."""

import argparse
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebot import models_cli
from voicebot.model_download import (
    MODELS,
    ModelDownloadError,
    ModelSpec,
    download_model,
    is_installed,
    model_path,
)

SMALL = MODELS["vosk-ja-small"]
MODEL_FILES = {
    "am/final.mdl": b"\x00fake acoustic model\x01" * 500,
    "conf/model.conf": b"--min-active=200\n",
    "graph/words.txt": "<eps> 0\n税 1\n".encode(),
    "README": b"test model\n",
}


def build_zip(top: str, files: dict[str, bytes] = MODEL_FILES) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr(f"{top}/", b"")
        for name, data in files.items():
            zipped.writestr(f"{top}/{name}", data)
    return buffer.getvalue()


class Server:
    """A loopback HTTP server over a directory, recording the paths requested."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def publish(self, name: str, data: bytes) -> str:
        (self.root / "models").mkdir(exist_ok=True)
        (self.root / "models" / name).write_bytes(data)
        return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=10)


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if not p.name.endswith(".lock"))


def test_registry_has_the_japanese_vosk_models() -> None:
    assert SMALL.url == "https://alphacephei.com/vosk/models/vosk-model-small-ja-0.22.zip"
    assert SMALL.archive_name == "vosk-model-small-ja-0.22.zip"
    assert SMALL.unpacked_dir == "vosk-model-small-ja-0.22"
    assert SMALL.size == 49_704_573
    big = MODELS["vosk-ja"]
    assert big.url == "https://alphacephei.com/vosk/models/vosk-model-ja-0.22.zip"
    assert big.unpacked_dir == "vosk-model-ja-0.22"


def test_download_verifies_and_unpacks(server: Server, tmp_path: Path) -> None:
    sha = server.publish(SMALL.archive_name, build_zip(SMALL.unpacked_dir))
    dest = tmp_path / "models"
    calls: list[tuple[int, int]] = []
    path = download_model(
        "vosk-ja-small",
        dest,
        base_url=server.base_url,
        sha256=sha.upper(),  # hex case does not matter
        progress=lambda done, total: calls.append((done, total)),
    )
    assert path == dest / "vosk-model-small-ja-0.22" == model_path("vosk-ja-small", dest)
    for name, data in MODEL_FILES.items():
        assert (path / name).read_bytes() == data
    assert is_installed("vosk-ja-small", dest)
    assert server.requests == ["/models/vosk-model-small-ja-0.22.zip"]
    assert (
        calls[-1][0] == calls[-1][1] == (server.root / "models" / SMALL.archive_name).stat().st_size
    )
    assert leftovers(dest) == ["vosk-model-small-ja-0.22"]


def test_second_download_is_a_no_op(server: Server, tmp_path: Path) -> None:
    sha = server.publish(SMALL.archive_name, build_zip(SMALL.unpacked_dir))
    dest = tmp_path / "models"
    first = download_model("vosk-ja-small", dest, base_url=server.base_url, sha256=sha)
    again = download_model("vosk-ja-small", dest, base_url=server.base_url, sha256=sha)
    assert first == again
    assert len(server.requests) == 1


def test_bad_checksum_is_refused_and_nothing_is_installed(server: Server, tmp_path: Path) -> None:
    server.publish(SMALL.archive_name, build_zip(SMALL.unpacked_dir))
    dest = tmp_path / "models"
    wrong = "ab" * 32
    with pytest.raises(ModelDownloadError, match="refusing to install vosk-ja-small") as excinfo:
        download_model("vosk-ja-small", dest, base_url=server.base_url, sha256=wrong)
    assert f"expected {wrong}" in str(excinfo.value)
    assert server.base_url in str(excinfo.value)
    assert not is_installed("vosk-ja-small", dest)
    assert leftovers(dest) == []


def test_registry_md5_and_size_are_enforced(server: Server, tmp_path: Path) -> None:
    # Without an override the registry's md5 and size for the real archive apply, and a
    # different file (here: our small test zip) is refused.
    server.publish(SMALL.archive_name, build_zip(SMALL.unpacked_dir))
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError) as excinfo:
        download_model("vosk-ja-small", dest, base_url=server.base_url)
    message = str(excinfo.value)
    assert f"expected {SMALL.size}" in message
    assert f"expected {SMALL.md5}" in message
    assert leftovers(dest) == []


def test_custom_registry_entry_verified_by_md5(server: Server, tmp_path: Path) -> None:
    data = build_zip("tiny-model")
    server.publish("tiny-model.zip", data)
    spec = ModelSpec(
        name="tiny",
        url="https://example.invalid/models/tiny-model.zip",
        unpacked_dir="tiny-model",
        description="test",
        md5=hashlib.md5(data).hexdigest(),
        size=len(data),
    )
    path = download_model("tiny", tmp_path / "m", base_url=server.base_url, registry={"tiny": spec})
    assert (path / "README").read_bytes() == MODEL_FILES["README"]


def test_http_404_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match="HTTP 404") as excinfo:
        download_model("vosk-ja-small", dest, base_url=server.base_url, sha256="00" * 32)
    assert f"{server.base_url}/vosk-model-small-ja-0.22.zip" in str(excinfo.value)
    assert leftovers(dest) == []


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    # Bind a port, then close it, so nothing listens there.
    probe = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    with pytest.raises(ModelDownloadError, match="download failed"):
        download_model(
            "vosk-ja-small", tmp_path, base_url=f"http://127.0.0.1:{port}", sha256="00" * 32
        )


def test_model_without_checksum_needs_an_explicit_choice(server: Server, tmp_path: Path) -> None:
    data = build_zip("vosk-model-ja-0.22")
    sha = server.publish("vosk-model-ja-0.22.zip", data)
    with pytest.raises(ModelDownloadError, match="--sha256"):
        download_model("vosk-ja", tmp_path, base_url=server.base_url)
    assert server.requests == []  # refused before downloading a gigabyte
    path = download_model("vosk-ja", tmp_path, base_url=server.base_url, allow_unverified=True)
    assert (path / "am" / "final.mdl").is_file()
    # And pinning the sha256 works the same way.
    pinned = tmp_path / "pinned"
    assert download_model("vosk-ja", pinned, base_url=server.base_url, sha256=sha).is_dir()


def test_archive_with_wrong_layout_is_refused(server: Server, tmp_path: Path) -> None:
    sha = server.publish(SMALL.archive_name, build_zip("some-other-dir"))
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match="outside the expected top-level directory"):
        download_model("vosk-ja-small", dest, base_url=server.base_url, sha256=sha)
    assert leftovers(dest) == []


def test_archive_with_path_traversal_is_refused(server: Server, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("vosk-model-small-ja-0.22/README", b"ok")
        zipped.writestr("vosk-model-small-ja-0.22/../../escape.txt", b"evil")
    sha = server.publish(SMALL.archive_name, buffer.getvalue())
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match="unsafe path"):
        download_model("vosk-ja-small", dest, base_url=server.base_url, sha256=sha)
    assert leftovers(dest) == []
    assert not (tmp_path / "escape.txt").exists()


def test_corrupt_zip_is_refused(server: Server, tmp_path: Path) -> None:
    sha = server.publish(SMALL.archive_name, b"PK\x03\x04 this is not really a zip")
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match="not a valid zip"):
        download_model("vosk-ja-small", dest, base_url=server.base_url, sha256=sha)
    assert leftovers(dest) == []


def test_file_url_mirror_works(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = build_zip(SMALL.unpacked_dir)
    (mirror / SMALL.archive_name).write_bytes(data)
    path = download_model(
        "vosk-ja-small",
        tmp_path / "models",
        base_url=mirror.as_uri(),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    assert (path / "conf" / "model.conf").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sha256": "xyz"}, "64 hex digits"),
        ({"sha256": "00" * 31}, "64 hex digits"),
        ({"base_url": "ftp://mirror.example/models", "sha256": "00" * 32}, "unsupported URL"),
    ],
)
def test_invalid_arguments_are_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelDownloadError, match=message):
        download_model("vosk-ja-small", tmp_path, **kwargs)


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelDownloadError, match="known models: vosk-ja, vosk-ja-small"):
        download_model("vosk-en", tmp_path)


def test_default_destination_is_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path / "cache"))
    assert model_path("vosk-ja") == tmp_path / "cache" / "models" / "vosk-model-ja-0.22"


# --- the `models` command group ---------------------------------------------------------


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebot")
    models_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_download_list_and_errors(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = server.publish(SMALL.archive_name, build_zip(SMALL.unpacked_dir))
    dest = tmp_path / "models"
    base = ["models", "download", "vosk-ja-small", "--dest", str(dest)]
    bad = cli(*base, "--base-url", server.base_url, "--sha256", "cd" * 32)
    assert bad.func(bad) == 1
    assert "error: refusing to install vosk-ja-small" in capsys.readouterr().err

    good = cli(*base, "--base-url", server.base_url, "--sha256", sha)
    assert good.func(good) == 0
    assert capsys.readouterr().out.strip() == str(dest / "vosk-model-small-ja-0.22")

    listing = cli("models", "list", "--dest", str(dest))
    assert listing.func(listing) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("v", "w"))}
    assert "installed" in lines["vosk-ja-small"] and "not installed" not in lines["vosk-ja-small"]
    assert "not installed" in lines["vosk-ja"]
    assert "no checksum" in lines["vosk-ja"]
    assert "not prepared" in lines["whisper-base"]
    assert f"models directory: {dest}" in out


def test_cli_rejects_unknown_model_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli("models", "download", "vosk-en")
    assert "invalid choice" in capsys.readouterr().err


def test_cli_prepare_joins_whisper_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "whisper-base"
    args = cli("models", "prepare", "--cache-dir", str(target))
    assert args.func(args) == 0
    ja_target = tmp_path / "whisper-base-ja"
    assert capsys.readouterr().out.split() == [str(target), str(ja_target)]
    assert (target / "model.bin").stat().st_size > 100_000_000
    assert (ja_target / "original_token_ids.json").is_file()
    listing = cli("models", "list", "--dest", str(tmp_path))
    listing.func(listing)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["whisper-base", "prepared"]
    assert lines[1].split()[:2] == ["whisper-base-ja", "prepared"]


def test_cli_prepare_full_only_skips_the_japanese_copy(tmp_path: Path, capsys) -> None:
    target = tmp_path / "whisper-base"
    args = cli("models", "prepare", "--cache-dir", str(target), "--full-only")
    assert args.func(args) == 0
    assert capsys.readouterr().out.split() == [str(target)]
    assert not (tmp_path / "whisper-base-ja").exists()
