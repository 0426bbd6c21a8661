"""Training logs: append-only CSV files and TensorBoard, trimmed on resume so no step appears twice."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..files import atomic_path


class CsvLog:
    """Rows of metrics in ``path``; the header grows when new keys appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] = []
        if path.exists():
            with path.open(newline="") as f:
                self.fields = next(csv.reader(f), [])

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (written by a run that stopped before its next checkpoint)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r.get("step") or 0)) <= step]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.fields]
        if new:
            rows = []
            if self.path.exists():
                with self.path.open(newline="") as f:
                    rows = list(csv.DictReader(f))
            self.fields += new
            self._rewrite(rows)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class Logs:
    """``train.csv`` (every few steps), ``valid.csv`` (every epoch) and TensorBoard scalars."""

    def __init__(self, out: Path, tensorboard: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self.train = CsvLog(out / "train.csv")
        self.valid = CsvLog(out / "valid.csv")
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))

    def resume_at(self, step: int) -> None:
        if self.enabled:
            self.train.truncate_after(step)
            self.valid.truncate_after(step)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        (self.train if kind == "train" else self.valid).write({"step": step, **values})
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("epoch",):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
