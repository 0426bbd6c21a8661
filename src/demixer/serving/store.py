"""Job records in SQLite: the service's only state besides the files in each job's folder.

Every change is one committed transaction, so a killed server finds on restart exactly the
jobs it had: finished ones stay finished, queued ones are still queued, and running ones are
re-queued or failed by :meth:`JobStore.recover` -- never left "running".
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Job states. ``expired``: results removed after the retention time.
STATES = ("queued", "running", "done", "failed", "cancelled", "expired")
FINISHED = ("done", "failed", "cancelled", "expired")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    filename TEXT NOT NULL,
    options TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT 'queued',
    progress REAL NOT NULL DEFAULT 0,
    duration REAL,
    sample_rate INTEGER,
    channels INTEGER,
    stems TEXT,
    extension TEXT,
    timings TEXT,
    quality TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""
_JSON = ("options", "stems", "timings", "quality")


@dataclass
class Job:
    """One job's record (see the ``jobs`` table)."""

    id: str
    state: str
    filename: str
    options: dict[str, Any]
    model: str
    created: float
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    stage: str = "queued"
    progress: float = 0.0
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    stems: list[str] | None = None
    extension: str | None = None
    timings: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    error: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        for key in _JSON:
            if values.get(key) is not None:
                values[key] = json.loads(values[key])
        return cls(**values)


class JobStore:
    """Thread-safe access to the jobs table (one connection, one lock, WAL journal)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: tuple = ()) -> Job | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return Job.from_row(row) if row is not None else None

    def insert(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, filename, options, model, created, duration, sample_rate, channels) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.state,
                    job.filename,
                    json.dumps(job.options),
                    job.model,
                    job.created,
                    job.duration,
                    job.sample_rate,
                    job.channels,
                ),
            )

    def get(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list(self, limit: int = 100) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [Job.from_row(r) for r in rows]

    @staticmethod
    def _assignments(values: dict[str, Any]) -> tuple[str, tuple]:
        """``SET`` clause and its arguments (JSON columns serialised)."""
        sets = ", ".join(f"{k} = ?" for k in values)
        return sets, tuple(json.dumps(v) if k in _JSON and v is not None else v for k, v in values.items())

    def update(self, job_id: str, **values: Any) -> None:
        if not values:
            return
        sets, args = self._assignments(values)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*args, job_id))

    def set_state_if(self, job_id: str, expected: tuple[str, ...], **values: Any) -> bool:
        """Update only if the job is in one of ``expected`` states (atomic check-and-set)."""
        sets, args = self._assignments(values)
        marks = ", ".join("?" for _ in expected)
        with self._lock:
            cur = self._db.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND state IN ({marks})", (*args, job_id, *expected)
            )
            return cur.rowcount == 1

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def claim_next(self) -> Job | None:
        """Mark the oldest queued job running and return it (None when the queue is empty)."""
        return self._one(
            "UPDATE jobs SET state = 'running', started = ?, attempts = attempts + 1, stage = 'starting', progress = 0 "
            "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY created LIMIT 1) RETURNING *",
            (time.time(),),
        )

    def count(self, state: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0])

    def audio_seconds(self, state: str) -> float:
        """The audio seconds of all jobs in ``state`` (what the queue holds, for Retry-After)."""
        with self._lock:
            row = self._db.execute("SELECT SUM(duration) FROM jobs WHERE state = ?", (state,)).fetchone()
        return float(row[0] or 0.0)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        found = {s: 0 for s in STATES}
        found.update({r[0]: int(r[1]) for r in rows})
        return found

    def recover(self, max_attempts: int) -> tuple[builtins.list[str], builtins.list[str]]:
        """After a restart: re-queue jobs that were running (or fail those out of attempts).

        Returns:
            ``(requeued_ids, failed_ids)``.
        """
        with self._lock:
            rows = self._db.execute("SELECT id, attempts FROM jobs WHERE state = 'running'").fetchall()
            requeued, failed = [], []
            for job_id, attempts in rows:
                if attempts < max_attempts:
                    self._db.execute(
                        "UPDATE jobs SET state = 'queued', stage = 'queued', progress = 0, started = NULL WHERE id = ?",
                        (job_id,),
                    )
                    requeued.append(job_id)
                else:
                    self._db.execute(
                        "UPDATE jobs SET state = 'failed', stage = 'failed', finished = ?, error = ? WHERE id = ?",
                        (
                            time.time(),
                            f"interrupted: the server stopped while the job ran ({attempts} attempt(s))",
                            job_id,
                        ),
                    )
                    failed.append(job_id)
        return requeued, failed

    def finished_before(self, when: float) -> builtins.list[str]:
        """Ids of done/failed/cancelled jobs that finished before ``when`` (candidates for expiry)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE state IN ('done', 'failed', 'cancelled') AND finished < ?", (when,)
            ).fetchall()
        return [r[0] for r in rows]

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM jobs").fetchall()}
