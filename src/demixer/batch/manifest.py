"""Batch inputs (folders, globs, CSV/JSONL manifests) and the results manifest (JSONL).

The results manifest gets one line per finished item (``ok`` or ``failed``), appended and
flushed to disk as work finishes, so a killed run loses at most the items in flight. Reading
it tolerates a torn last line and keeps the latest record per input.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ..audio import probe
from ..errors import AudioError, OptionsError
from ..files import write_text_atomic
from ..separation.naming import expand_inputs

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


def _read_input_manifest(path: Path) -> list[str]:
    """Paths listed in a CSV (a ``path`` column, else the first column) or JSONL (``{"path": ...}``) file;
    relative paths are relative to the manifest."""
    items: list[str] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return []
        header = [c.strip().lower() for c in rows[0]]
        col = header.index("path") if "path" in header else 0
        body = rows[1:] if "path" in header else rows
        items = [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    else:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise OptionsError(f"{path}:{n}: not a JSON line") from None
            if not isinstance(record, dict) or "path" not in record:
                raise OptionsError(f'{path}:{n}: each line needs a "path" field')
            items.append(str(record["path"]))
    return [str(p if Path(p).is_absolute() else path.parent / p) for p in items]


def collect_inputs(items: list[str]) -> list[Path]:
    """Audio files from folders (recursive), globs and manifests (``.csv``/``.jsonl``), deduplicated, in order."""
    expanded: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            expanded += _read_input_manifest(p)
        else:
            expanded.append(item)
    return [p.resolve() for p in expand_inputs(expanded)]


class ResultsManifest:
    """The JSONL record of a batch: ``input, outputs, duration, rtf, quality, status, error``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        """Latest record per input (torn or foreign lines are skipped)."""
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "input" in record:
                records[record["input"]] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, allow_nan=False, default=str) + "\n"
        with self.path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def compact(self) -> None:
        """Rewrite with one line per input (the latest), atomically."""
        records = self.read()
        write_text_atomic(
            self.path, "".join(json.dumps(r, allow_nan=False, default=str) + "\n" for r in records.values())
        )


def finished(record: dict[str, Any] | None, outputs: dict[str, Path]) -> bool:
    """An item is done only if the manifest says so *and* every output it names is there and
    decodes with the recorded duration (outputs are checked, not trusted)."""
    if not record or record.get("status") != "ok":
        return False
    if {k: str(v) for k, v in outputs.items()} != record.get("outputs"):
        return False
    for path in outputs.values():
        try:
            info = probe(path)
        except AudioError:
            return False
        if abs(info.duration - float(record.get("duration", -1))) > 0.05:
            return False
    return True
