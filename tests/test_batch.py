"""`demixer batch`: local pool and Ray, manifests, bad files, kill -9 and resume, same results on both engines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf

from .conftest import run_cli, shared

pytestmark = pytest.mark.slow  # every test here runs the real server or batch processes


def _corpus(folder: Path, n_music: int = 0, seconds: float = 12.0) -> list[Path]:
    """Real speech files, music excerpts, and broken files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for src in sorted(shared("speech/cmu_arctic").glob("*.flac"))[:3]:
        dst = folder / src.name
        dst.write_bytes(src.read_bytes())
        files.append(dst)
    if n_music:
        from demixer.data import find_tracks

        track = find_tracks(shared("music/train"))[0]
        for k in range(n_music):
            audio = sum(
                track.read(s, int((30 + k * seconds) * 44100), int(seconds * 44100), 44100, 2) for s in track.stems
            )
            path = folder / f"song{k:02d}.wav"
            sf.write(path, audio.T, 44100)
            files.append(path)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (folder / "empty.flac").write_bytes(b"")
    return files


def _records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def _outputs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "manifest.jsonl")


def test_local_batch_records_failures_and_skips_finished_items(tmp_path):
    good = _corpus(tmp_path / "in")
    out = tmp_path / "out"
    r = run_cli("batch", tmp_path / "in", "-o", out, "-n", "spectral-gate", "--workers", "2", "--no-progress")
    assert r.returncode == 1, "failed items make the exit code 1"
    assert "3 separated, 0 already done, 2 failed" in r.stdout
    records = {Path(rec["input"]).name: rec for rec in _records(out / "spectral-gate" / "manifest.jsonl")}
    assert len(records) == 5, "one line per input after the run"
    for f in good:
        rec = records[f.name]
        assert rec["status"] == "ok" and rec["duration"] > 1 and rec["rtf"] > 0
        assert all(Path(p).is_file() for p in rec["outputs"].values())
    assert "empty" in records["empty.flac"]["error"] and records["corrupt.wav"]["status"] == "failed"
    stamps = {
        p: os.stat(p).st_mtime_ns for rec in records.values() if rec["status"] == "ok" for p in rec["outputs"].values()
    }
    again = run_cli("batch", tmp_path / "in", "-o", out, "-n", "spectral-gate", "--no-progress")
    assert "0 separated, 3 already done, 2 failed" in again.stdout
    assert all(os.stat(p).st_mtime_ns == t for p, t in stamps.items()), "finished outputs are not redone"
    # an output that vanished is noticed (outputs are checked, not trusted)
    victim = next(iter(stamps))
    os.remove(victim)
    third = run_cli("batch", tmp_path / "in", "-o", out, "-n", "spectral-gate", "--no-progress")
    assert "1 separated, 2 already done" in third.stdout and Path(victim).is_file()


def test_manifest_inputs_and_foreign_outputs(tmp_path):
    good = _corpus(tmp_path / "in")
    (tmp_path / "list.csv").write_text("path,comment\n" + "".join(f"in/{f.name},x\n" for f in good[:2]))
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(good[2])}) + "\n")
    out = tmp_path / "out"
    foreign = out / "spectral-gate" / good[0].stem / "speech.wav"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"somebody else's file")
    r = run_cli(
        "batch", tmp_path / "list.csv", tmp_path / "list.jsonl", "-o", out, "-n", "spectral-gate", "--no-progress"
    )
    assert "3 item(s): 2 separated, 0 already done, 1 failed" in r.stdout
    assert "not from this batch" in r.stderr and foreign.read_bytes() == b"somebody else's file", (
        "never overwritten silently"
    )


def test_kill_minus_nine_then_resume(tmp_path):
    """A batch killed mid-run restarts with no missing and no duplicate outputs."""
    _corpus(tmp_path / "in", n_music=6, seconds=15)
    out = tmp_path / "out"
    manifest = out / "hpss" / "manifest.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "demixer",
        "batch",
        str(tmp_path / "in"),
        "-o",
        str(out),
        "-n",
        "hpss",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [r for r in _records(manifest) if r["status"] == "ok"] if manifest.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # let it get into the middle of the next item
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [r for r in _records(manifest) if r["status"] == "ok"]
    assert 3 <= len(before) < 9, "killed in the middle of the batch"
    r = run_cli("batch", tmp_path / "in", "-o", out, "-n", "hpss", "--no-progress")
    assert r.returncode == 1  # the two broken files
    final = _records(manifest)
    assert len(final) == 11 and len({rec["input"] for rec in final}) == 11, "one record per input"
    ok = [rec for rec in final if rec["status"] == "ok"]
    assert len(ok) == 9
    expected = sorted(str(Path(p).relative_to(out)) for rec in ok for p in rec["outputs"].values())
    assert _outputs(out) == expected, "exactly the planned outputs: nothing missing, no duplicates, no leftovers"
    for rec in ok:
        for p in rec["outputs"].values():
            assert abs(sf.info(p).duration - rec["duration"]) < 0.01


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path, monkeypatch):
    """`ray start --head` on this machine, as a separate cluster the batch connects to, with Ray's
    token authentication (the token is given to the head and to the batch through the environment)."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    port = _free_port()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", os.urandom(16).hex())
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    env = dict(os.environ)
    subprocess.run(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--object-store-memory=150000000",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=180,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_ray_engine_matches_local(tmp_path, ray_cluster):
    _corpus(tmp_path / "in", n_music=1, seconds=6)
    r_local = run_cli("batch", tmp_path / "in", "-o", tmp_path / "local", "-n", "hpss", "--no-progress")
    r_ray = run_cli(
        "batch",
        tmp_path / "in",
        "-o",
        tmp_path / "ray",
        "-n",
        "hpss",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
        "--workers",
        "2",
        "--no-progress",
        timeout=600,
    )
    # the broken files fail on Ray too, and the batch goes on
    assert r_local.returncode == r_ray.returncode == 1, r_ray.stderr
    assert "4 separated, 0 already done, 2 failed" in r_ray.stdout
    local = {Path(r["input"]).name: r for r in _records(tmp_path / "local" / "hpss" / "manifest.jsonl")}
    remote = {Path(r["input"]).name: r for r in _records(tmp_path / "ray" / "hpss" / "manifest.jsonl")}
    assert {k: v["status"] for k, v in local.items()} == {k: v["status"] for k, v in remote.items()}
    for name, rec in local.items():
        for stem, path in rec["outputs"].items():
            if rec["status"] == "ok":
                a, _ = sf.read(path)
                b, _ = sf.read(remote[name]["outputs"][stem])
                assert np.array_equal(a, b), (name, stem)
    again = run_cli(
        "batch",
        tmp_path / "in",
        "-o",
        tmp_path / "ray",
        "-n",
        "hpss",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
        "--no-progress",
        timeout=600,
    )
    assert "0 separated, 4 already done" in again.stdout


def test_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of the batch process alone (not its group): its workers stop within seconds and write nothing more."""
    _corpus(tmp_path / "in", n_music=6, seconds=15)
    out = tmp_path / "out"
    manifest = out / "hpss" / "manifest.jsonl"
    cmd = [sys.executable, "-m", "demixer", "batch", str(tmp_path / "in"), "-o", str(out), "-n", "hpss"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (manifest.exists() and any(r["status"] == "ok" for r in _records(manifest))):
        time.sleep(0.2)
    session = [p for p in psutil.process_iter() if _sid(p.pid) == proc.pid and p.pid != proc.pid]
    assert session, "the workers were running"
    os.kill(proc.pid, signal.SIGKILL)  # the parent only
    proc.wait()
    gone, alive = psutil.wait_procs(session, timeout=10)
    assert not alive, f"left running after the parent died: {[p.cmdline() for p in alive]}"
    settled = sorted(str(p) for p in out.rglob("*.wav"))
    time.sleep(2.0)
    assert sorted(str(p) for p in out.rglob("*.wav")) == settled, "nothing is written after the parent died"
    r = run_cli("batch", tmp_path / "in", "-o", out, "-n", "hpss", "--no-progress")
    assert r.returncode == 1  # the two broken files
    final = _records(manifest)
    assert len({rec["input"] for rec in final}) == 11 and sum(rec["status"] == "ok" for rec in final) == 9


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None
