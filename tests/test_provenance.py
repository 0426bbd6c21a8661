"""Provenance records of ``separate --provenance`` and ``demixer verify``, through the real CLI; the record's seal
and digests in process."""

from __future__ import annotations

import json
import shutil

import pytest

from demixer.provenance.record import digest, seal_of, section_digests
from demixer.provenance.verify import Verdict, _check_seal

from .conftest import run_cli, shared


def _sealed(record: dict) -> dict:
    record["option_digests"] = {k: digest(v) for k, v in record["options"].items()}
    record["section_digests"] = section_digests(record)
    record["seal"] = seal_of(record)
    return record


def test_the_seal_names_the_part_and_the_option_that_changed():
    record = _sealed({"format": "demixer-provenance/1", "options": {"lufs": -16.0, "skip": []}, "chain": "x"})
    v = Verdict()
    _check_seal(record, v)
    assert v.ok and "seal matches" in v.checks[0]
    edited = json.loads(json.dumps(record))
    edited["options"]["skip"] = ["denoise"]
    edited["chain"] = "y"
    v = Verdict()
    _check_seal(edited, v)
    assert v.problems == [
        "record: option(s) changed after the record was written: skip",
        "record: edited after it was written (changed: chain)",
    ]


@pytest.mark.slow
def test_separate_provenance_round_trips_and_a_moved_input_can_be_named(tmp_path):
    noisy = shared("denoising_pairs/valentini_p287/noisy/p287_001.flac")
    source = tmp_path / "in" / "p287 001.flac"
    source.parent.mkdir()
    shutil.copy(noisy, source)
    out = tmp_path / "out"
    r = run_cli("separate", "--task", "denoise", str(source), "-o", str(out), "--provenance", "--flac")
    assert r.returncode == 0, r.stderr
    record_path = out / "demixer-denoise" / "p287 001" / "p287 001.provenance.json"
    assert "provenance:" in r.stdout and record_path.is_file()
    record = json.loads(record_path.read_text())
    assert record["command"] == "separate" and set(record["outputs"]) == {"speech", "noise"}
    assert record["options"]["task"] == "denoise" and record["options"]["flac"] is True
    assert record["models"][0]["name"] == "demixer-denoise" and record["models"][0]["card"]["sha256"]
    assert any("flac" in n for n in record["notes"])
    assert (record_path.parent / "p287 001.provenance.html").read_text().count("SHA-256") >= 1

    r = run_cli("verify", str(record_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("reproduced bit for bit") == 3  # two stems, then the summary line

    moved = tmp_path / "moved.flac"
    source.rename(moved)
    r = run_cli("verify", str(record_path))
    assert r.returncode == 1 and "is missing" in r.stdout
    r = run_cli("verify", str(record_path), "--input", str(moved))
    assert r.returncode == 0, r.stdout


def test_the_python_api_writes_records_too(tmp_path):
    import soundfile as sf

    import demixer

    from .conftest import tone

    path = tmp_path / "tone.wav"
    sf.write(path, tone(3.0, 16000, 1).T, 16000)
    result = demixer.Separator("hpss", out=str(tmp_path / "sep"), provenance=True).separate_to_files(path)
    record = json.loads(result.provenance_paths["provenance"].read_text())
    assert record["command"] == "separate" and record["models"][0]["kind"] == "training-free"
    assert set(record["outputs"]) == {"drums", "other"}
    cleaned = demixer.clean(path, out=str(tmp_path / "clean"), skip=["dialogue", "denoise"], provenance=True)
    record = json.loads(cleaned.extra_files["provenance"].read_text())
    assert (
        record["command"] == "clean" and record["models"] == [] and record["options"]["skip"] == ["dialogue", "denoise"]
    )
    assert demixer.verify_record(cleaned.extra_files["provenance"]).ok
