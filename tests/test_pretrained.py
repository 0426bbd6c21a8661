"""The model store against a real HTTP server on loopback: downloads, checksums, resume, offline mode.

The server serves files the test makes (a small Open-Unmix model's state dicts), with range
requests; it can cut a transfer short or serve corrupted bytes. Everything goes through the real
CLI (`demixer models download`, `demixer separate -n NAME`) with its own cache and manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from demixer.errors import ModelNotFoundError
from demixer.models.published import safe_torch_load


class _Server:
    """Serves ``files`` (name -> bytes) with Range support; records every request."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut_first = set()  # names whose first transfer stops halfway
        self.corrupt = set()  # names served with one byte flipped
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                if name in server.corrupt:
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.cut_first:
                    server.cut_first.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the client sees a short body
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


UMX_CONFIG = {"n_fft": 512, "hop_length": 128, "hidden_size": 16, "max_bin": 200, "nb_layers": 1}


def _umx_files(tmp: Path) -> dict[str, bytes]:
    """State dicts of a small random Open-Unmix, one per target, as the reference publishes them (.pth)."""
    from demixer.models.open_unmix import OpenUnmix, OpenUnmixConfig

    torch.manual_seed(0)
    model = OpenUnmix(OpenUnmixConfig(sources=("vocals", "accompaniment"), **UMX_CONFIG))
    files = {}
    for target, net in model.targets.items():
        path = tmp / f"{target}.pth"
        torch.save({**net.state_dict(), "sample_rate": torch.tensor(44100.0)}, path)  # extras some umx files carry
        files[f"{target}-x.pth"] = path.read_bytes()
    return files


def _manifest(
    path: Path, url: str, files: dict[str, bytes], checks: dict[str, dict] | None = None, name: str = "tiny-umx"
) -> Path:
    checks = checks or {}
    entry = {
        "architecture": "open_unmix",
        "format": "umx",
        "sources": ["vocals", "accompaniment"],
        "sample_rate": 44100,
        "tasks": ["karaoke"],
        "licence": "test",
        "description": "test model",
        "config": UMX_CONFIG,
        "files": [
            {
                "name": n,
                "url": f"{url}/{n}",
                "role": n.split("-")[0],
                **checks.get(n, {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}),
            }
            for n, b in files.items()
        ],
    }
    path.write_text(json.dumps({"models": {name: entry}}))
    return path


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "demixer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


@pytest.fixture
def store(tmp_path):
    files = _umx_files(tmp_path)
    server = _Server(files)
    env = {
        "DEMIXER_CACHE_DIR": str(tmp_path / "cache"),
        "DEMIXER_MANIFEST": str(_manifest(tmp_path / "m.json", server.url, files)),
    }
    yield server, files, env, tmp_path
    server.close()


def _cached(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    return (
        sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))
        if root.exists()
        else []
    )


@pytest.mark.slow
def test_download_verify_and_separate_offline(store):
    server, files, env, tmp = store
    r = _cli("models", "download", "tiny-umx", env=env)
    assert r.returncode == 0, r.stderr
    assert "2 file(s) verified" in r.stdout
    assert _cached(tmp) == sorted(
        [f"checkpoints/tiny-umx/{n}" for n in files] + [f"checkpoints/tiny-umx/{n}.sha256" for n in files]
    )
    for n, b in files.items():
        assert (tmp / "cache" / "checkpoints" / "tiny-umx" / n).read_bytes() == b
    listed = {row["name"]: row for row in json.loads(_cli("models", "list", "--json", env=env).stdout)}
    assert listed["tiny-umx"]["cached"] is True and listed["tiny-umx"]["sources"] == ["vocals", "accompaniment"]

    # offline from here: no request may reach the server
    seen = len(server.requests)
    x = (0.3 * np.random.default_rng(0).standard_normal((22050, 2))).astype(np.float32)
    sf.write(tmp / "mix.wav", x, 44100)
    r = _cli("--offline", "separate", "-n", "tiny-umx", "-o", str(tmp / "out"), str(tmp / "mix.wav"), env=env)
    assert r.returncode == 0, r.stderr
    stems = {p.stem: sf.read(p)[0] for p in (tmp / "out" / "tiny-umx" / "mix").glob("*.wav")}
    assert set(stems) == {"vocals", "accompaniment"} and all(s.shape == x.shape for s in stems.values())
    assert len(server.requests) == seen
    assert _cli("models", "verify", "tiny-umx", env=env).returncode == 0


@pytest.mark.slow
def test_interrupted_download_resumes_with_a_range_request(store):
    server, files, env, tmp = store
    name = next(iter(files))
    server.cut_first.add(name)
    r = _cli("models", "download", "tiny-umx", env=env)
    assert r.returncode == 0, r.stderr
    ranged = [rng for n, rng in server.requests if n == name and rng]
    assert ranged and ranged[0] == f"bytes={len(files[name]) // 2}-", server.requests
    assert (tmp / "cache" / "checkpoints" / "tiny-umx" / name).read_bytes() == files[name]


@pytest.mark.slow
def test_corrupted_download_is_refused_and_deleted(store):
    server, files, env, tmp = store
    name = next(iter(files))
    server.corrupt.add(name)
    r = _cli("models", "download", "tiny-umx", env=env)
    assert r.returncode == 1
    assert "sha256" in r.stderr and "deleted" in r.stderr and name in r.stderr
    assert not any(name in p for p in _cached(tmp)), _cached(tmp)  # neither the file nor its .part
    server.corrupt.clear()
    assert _cli("models", "download", "tiny-umx", env=env).returncode == 0  # a clean retry works


@pytest.mark.slow
def test_offline_never_connects_and_says_where_files_go(store):
    server, files, env, tmp = store
    x = np.zeros((4410, 2), np.float32)
    sf.write(tmp / "mix.wav", x, 44100)
    r = _cli(
        "separate", "-n", "tiny-umx", "-o", str(tmp / "out"), str(tmp / "mix.wav"), env={**env, "DEMIXER_OFFLINE": "1"}
    )
    assert r.returncode == 1
    assert server.requests == []
    cache = tmp / "cache" / "checkpoints" / "tiny-umx"
    for n in files:
        assert f"{cache / n}  <- {server.url}/{n}" in r.stderr
    assert not (tmp / "out").exists() or not any((tmp / "out").rglob("*.wav"))


@pytest.mark.slow
def test_unreachable_server_is_a_clear_error(store, tmp_path):
    server, files, env, tmp = store
    server.close()
    r = _cli("models", "download", "tiny-umx", env=env, timeout=120)
    assert r.returncode == 1
    assert "download failed" in r.stderr and "demixer models download tiny-umx" in r.stderr


@pytest.mark.slow
def test_prefix_checksum_pins_the_whole_digest(store):
    server, files, env, tmp = store
    checks = {n: {"sha256_prefix": hashlib.sha256(b).hexdigest()[:8]} for n, b in files.items()}
    env = {**env, "DEMIXER_MANIFEST": str(_manifest(tmp / "m2.json", server.url, files, checks))}
    r = _cli("models", "download", "tiny-umx", env=env)
    assert r.returncode == 0, r.stderr
    assert "pinned" in r.stderr
    name = next(iter(files))
    path = tmp / "cache" / "checkpoints" / "tiny-umx" / name
    record = json.loads(path.with_name(name + ".sha256").read_text())
    assert record["sha256"] == hashlib.sha256(files[name]).hexdigest()
    # a file swapped afterwards is caught even though its prefix could be forged: the pinned digest differs
    path.write_bytes(files[name] + b"\0")
    r = _cli("models", "verify", "tiny-umx", env=env)
    assert r.returncode == 1 and "BAD" in r.stdout


@pytest.mark.slow
def test_wrong_expected_prefix_is_a_checksum_error(store):
    server, files, env, tmp = store
    checks = {n: {"sha256_prefix": "00000000"} for n in files}
    env = {**env, "DEMIXER_MANIFEST": str(_manifest(tmp / "m3.json", server.url, files, checks))}
    r = _cli("models", "download", "tiny-umx", env=env)
    assert r.returncode == 1 and "expected 00000000..." in r.stderr
    assert _cached(tmp) == []


@pytest.mark.slow
def test_bad_manifest_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "models": {
                    "x": {
                        "architecture": "unet",
                        "format": "demixer",
                        "sources": ["a"],
                        "sample_rate": 44100,
                        "files": [{"name": "../evil", "url": "http://h/x"}],
                    }
                }
            }
        )
    )
    r = _cli("models", "list", env={"DEMIXER_MANIFEST": str(bad)})
    assert r.returncode == 1 and "plain file name" in r.stderr and str(bad) in r.stderr


def test_weights_only_loading_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.th"
    torch.save({"klass": Evil(), "state": {}}, path)
    with pytest.raises(ModelNotFoundError, match="weights-only"):
        safe_torch_load(path)
    assert not (tmp_path / "pwned").exists()


def test_shipped_manifest_is_complete():
    from demixer.pretrained import load_manifest

    manifest = load_manifest()
    for name in ("umxhq", "umxl", "htdemucs", "htdemucs_ft", "bs-roformer-viperx-1297", "mel-roformer-kim-vocals"):
        entry = manifest[name]
        assert entry.files and entry.licence and entry.sample_rate == 44100
        assert all(f.url.startswith("https://") for f in entry.files)
    assert manifest["htdemucs"].files[0].sha256 == "8726e21a993978c7ba086d3872e7608d7d5bfca646ca4aca459ffda844faa8b4"
    # the publishers' file names carry their digest prefix
    for f in manifest["htdemucs_ft"].files:
        assert f.name.split("-")[1].split(".")[0] == f.sha256_prefix


@pytest.mark.slow
def test_service_offers_only_cached_published_models(store, monkeypatch):
    import httpx

    from .test_serving import Server, submit, wait_done

    http, files, env, tmp = store
    assert _cli("models", "download", "tiny-umx", env=env).returncode == 0
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = Server(tmp / "data").start()
    try:
        names = {m["name"] for m in httpx.get(f"{server.url}/models", timeout=10).json()}
        assert "tiny-umx" in names and "umxhq" not in names  # shipped in the manifest, not in this cache
        seen = len(http.requests)
        sf.write(
            tmp / "mix.wav", (0.2 * np.random.default_rng(0).standard_normal((22050, 2))).astype(np.float32), 44100
        )
        r = submit(server, tmp / "mix.wav", name="tiny-umx")
        assert r.status_code == 202, r.text
        job = wait_done(server, r.json()["id"])
        assert job["state"] == "done" and job["stems"] == ["vocals", "accompaniment"], job
        r = submit(server, tmp / "mix.wav", name="umxhq")
        assert r.status_code == 422 and "demixer models download umxhq" in r.text
        assert len(http.requests) == seen  # the service never downloads
    finally:
        server.stop()
