"""How a demixer server is configured (``demixer serve`` flags map one to one)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionsError


def default_data_dir() -> Path:
    """Where jobs live unless ``--data-dir`` says otherwise: the platform's user data dir."""
    from platformdirs import user_data_path

    return Path(os.environ.get("DEMIXER_SERVE_DIR") or user_data_path("demixer") / "serve")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerSettings:
    """Limits and locations of one server.

    Attributes:
        data_dir: job folders and the SQLite database (``jobs.sqlite3``).
        workers: jobs separated at the same time.
        queue_size: jobs allowed to wait; beyond it uploads get 429 with Retry-After.
        max_upload_mb: request bodies above this get 413 (checked while streaming).
        max_duration_s: decoded audio longer than this gets 413.
        max_memory_mb: the memory one job may need above the server's own (its estimate, from the upload's
            channels, rate and length and the stems asked for: :func:`job_memory_mb`); above it, 413.
        ttl_hours: finished jobs' files are removed this long after they finish.
        max_attempts: a job interrupted by a server stop is re-run until it has had this many attempts,
            then marked failed.
        api_key: when set, every API call needs ``X-API-Key: KEY`` (or ``Authorization: Bearer KEY``).
        threads: torch threads per job (default: torch's).
        janitor_interval_s: how often expired jobs are looked for (default: half the TTL, at most a minute).
    """

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    queue_size: int = 16
    max_upload_mb: float = 200.0
    max_duration_s: float = 1200.0
    max_memory_mb: float = 4096.0
    ttl_hours: float = 24.0
    max_attempts: int = 2
    api_key: str | None = None
    threads: int | None = None
    janitor_interval_s: float | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.api_key is None:
            self.api_key = os.environ.get("DEMIXER_API_KEY") or None
        for name, value in (
            ("workers", self.workers),
            ("queue-size", self.queue_size),
            ("max-attempts", self.max_attempts),
        ):
            if value < 1:
                raise OptionsError(f"--{name}: must be >= 1, got {value}")
        for name, limit in (
            ("max-upload-mb", self.max_upload_mb),
            ("max-duration", self.max_duration_s),
            ("max-memory-mb", self.max_memory_mb),
            ("ttl-hours", self.ttl_hours),
        ):
            if not limit > 0:
                raise OptionsError(f"--{name}: must be > 0, got {limit}")
        if not is_loopback(self.host) and not self.api_key:
            raise OptionsError(
                f"--host {self.host}: binding beyond loopback needs an API key "
                "(--api-key KEY or the DEMIXER_API_KEY environment variable)"
            )

    @property
    def cleanup_every_s(self) -> float:
        return self.janitor_interval_s or min(60.0, max(0.5, self.ttl_hours * 3600 / 2))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


#: Bytes a job holds per input sample (one channel at the upload's rate) of the quality signals' excerpts, for
#: each of the mixture and its stems (float32 copies, blocks, resampling), measured by
#: ``benchmarks/service_memory.py``.
BYTES_PER_SAMPLE = 6.0
#: The excerpts the quality signals read: at most this many seconds of every signal, at the upload's rate.
EXCERPT_SECONDS = 60.0
#: What a job needs whatever the upload: the separation's chunks and the spectrograms (at most 48 kHz).
ANALYSIS_FIXED_MB = 1280.0


def job_memory_mb(seconds: float, sample_rate: int, channels: int, stems: int) -> float:
    """The memory (MiB) a job needs above the server's own, for the admission check (``--max-memory-mb``).

    The separation and the analysis stream the files block by block, so the length counts only up to the
    quality signals' excerpts (:data:`EXCERPT_SECONDS`); channels, rate and stems count in full.
    """
    samples = min(seconds, EXCERPT_SECONDS) * sample_rate * channels * (1 + stems)
    return ANALYSIS_FIXED_MB + samples * BYTES_PER_SAMPLE / 2**20


def longest_job_seconds(max_memory_mb: float, sample_rate: int, channels: int, stems: int) -> float:
    """The longest audio (seconds) of this shape that :func:`job_memory_mb` keeps within ``max_memory_mb``
    (``inf`` when the excerpts of any length fit)."""
    per_second = sample_rate * channels * (1 + stems) * BYTES_PER_SAMPLE / 2**20
    longest = max(0.0, (max_memory_mb - ANALYSIS_FIXED_MB) / per_second)
    return float("inf") if longest >= EXCERPT_SECONDS else longest
