"""``demixer verify RECORD``: check a provenance record, re-hash its files and re-run its work.

In order:

1. the record itself: its seal, and if that fails, which part changed (and which option, by name);
2. the input and every output on disk against their recorded SHA-256;
3. each model's weights against their recorded SHA-256;
4. the software and machine against the recorded ones (differences are reported: bit-for-bit
   reproduction is only expected on the same machine type and versions);
5. the work re-run from the recorded input with the recorded options into a temporary folder, and each
   new output compared with the recorded digest (``--no-rerun`` leaves this out).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DemixerError
from ..files import sha256_of
from .record import FORMAT, digest, environment, model_record, seal_of, section_digests

NOT_REPRODUCED = ("report", "quality")  # outputs that hold times and paths, so differ on every run by design


@dataclass
class Verdict:
    """The findings: ``ok`` lines and ``problems``; the record checks out when there is no problem."""

    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def good(self, line: str) -> None:
        self.checks.append(line)

    def bad(self, line: str) -> None:
        self.problems.append(line)


def _read(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemixerError(f"{path}: not a readable provenance record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DemixerError(f"{path}: not a {FORMAT} record")
    return record


def _check_seal(record: dict[str, Any], v: Verdict) -> None:
    if record.get("seal") == seal_of(record):
        v.good("record: seal matches (the record is as it was written)")
        return
    recorded = record.get("section_digests", {})
    now = section_digests(record)
    changed = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    changed_options = sorted(
        k
        for k in set(record.get("option_digests", {})) | set(record.get("options", {}))
        if record.get("option_digests", {}).get(k) != (digest(record["options"][k]) if k in record["options"] else None)
    )
    if changed_options:
        v.bad(f"record: option(s) changed after the record was written: {', '.join(changed_options)}")
    other = [k for k in changed if k not in ("options", "option_digests")]
    if other or not changed_options:
        v.bad(f"record: edited after it was written (changed: {', '.join(other) or 'the seal'})")


def _check_files(record: dict[str, Any], v: Verdict) -> None:
    items = [("input", record["input"])] + [(f"output {k}", f) for k, f in record["outputs"].items()]
    for label, facts in items:
        path = Path(facts["path"])
        if not path.is_file():
            v.bad(f"{label}: {path} is missing")
            continue
        now = sha256_of(path)
        if now == facts["sha256"]:
            v.good(f"{label}: {path} unchanged (sha256 {now[:16]}...)")
        else:
            v.bad(f"{label}: {path} has changed (sha256 recorded {facts['sha256'][:16]}..., now {now[:16]}...)")


def _check_models(record: dict[str, Any], v: Verdict) -> None:
    for m in record["models"]:
        now = {w["file"]: w["sha256"] for w in model_record(m["stage"], m["name"])["weights"]}
        for w in m["weights"]:
            if now.get(w["file"]) == w["sha256"]:
                v.good(f"model {m['name']}: {w['file']} unchanged")
            else:
                v.bad(f"model {m['name']}: {w['file']} differs from the recorded weights (or is missing)")


def _check_environment(record: dict[str, Any], v: Verdict) -> None:
    was = record["environment"]
    now = environment(was.get("device", "cpu"))
    diffs = []
    for key in ("demixer", "commit", "python", "machine", "processor", "torch_threads"):
        if was.get(key) != now.get(key):
            diffs.append(f"{key} {was.get(key)} -> {now.get(key)}")
    for lib, version in was.get("libraries", {}).items():
        if now["libraries"].get(lib) != version:
            diffs.append(f"{lib} {version} -> {now['libraries'].get(lib)}")
    if diffs:
        v.warnings.append("environment differs from the record: " + "; ".join(diffs))
    else:
        v.good("environment: same demixer, Python, libraries, machine type and threads")


def _audio_difference(a: Path, b: Path) -> str:
    """How two audio files differ, in words (largest sample difference, or their lengths)."""
    from ..audio.io import load_audio

    x, rx = load_audio(a)
    y, ry = load_audio(b)
    if x.shape != y.shape or rx != ry:
        return f"shape {x.shape} at {rx} Hz vs {y.shape} at {ry} Hz"
    return f"largest sample difference {float(np.abs(x - y).max()):.3g}"


def _rerun_clean(record: dict[str, Any], input_path: Path, out: Path) -> dict[str, Path]:
    from ..cleanup.chain import Cleaner
    from ..cleanup.options import CleanOptions

    options = CleanOptions.from_mapping({**record["options"], "out": str(out), "overwrite": True, "provenance": False})
    return Cleaner(options).clean_file(input_path).outputs


def _rerun_separate(record: dict[str, Any], input_path: Path, out: Path) -> dict[str, Path]:
    from ..options import SeparationOptions
    from ..separation.separator import Separator

    options = SeparationOptions.from_mapping(
        {**record["options"], "out": str(out), "overwrite": True, "provenance": False, "jobs": 1}
    )
    separator = Separator(options=options)
    ext = options.output_format.extension
    return separator.separate_to_files(input_path, {s: out / f"{s}.{ext}" for s in separator.sources}).outputs


RERUN = {"clean": _rerun_clean, "separate": _rerun_separate}


def _rerun(record: dict[str, Any], input_path: Path, v: Verdict) -> None:
    if record["command"] not in RERUN:
        raise DemixerError(f"cannot re-run a {record['command']!r} record (known: {', '.join(RERUN)})")
    from .record import determinism

    with tempfile.TemporaryDirectory(prefix="demixer-verify-") as tmp:
        determinism()
        outputs = RERUN[record["command"]](record, input_path, Path(tmp))
        for name, facts in record["outputs"].items():
            if name in NOT_REPRODUCED:
                continue
            new = outputs.get(name)
            if new is None:
                v.bad(f"re-run: output {name} was not produced again")
                continue
            digest_now = sha256_of(new)
            if digest_now == facts["sha256"]:
                v.good(f"re-run: output {name} reproduced bit for bit")
            else:
                old = Path(facts["path"])
                how = _audio_difference(old, new) if old.is_file() else "the recorded file is gone"
                v.bad(f"re-run: output {name} differs from the record ({how})")
        extra = sorted(set(outputs) - set(record["outputs"]))
        if extra:
            v.bad(f"re-run: produced outputs the record does not have: {', '.join(extra)}")


def verify_record(path: str | Path, *, rerun: bool = True, input_path: str | Path | None = None) -> Verdict:
    """Check a provenance record (see the module docstring). ``input_path``: where the input is now, if it
    moved (its digest must still match)."""
    record = _read(Path(path))
    v = Verdict()
    _check_seal(record, v)
    if input_path is not None:
        record = {**record, "input": {**record["input"], "path": str(input_path)}}
    _check_files(record, v)
    _check_models(record, v)
    _check_environment(record, v)
    if rerun:
        source = Path(record["input"]["path"])
        if not source.is_file():
            v.bad(f"re-run: the input {source} is missing (give its new place with --input)")
        else:
            _rerun(record, source, v)
    return v
