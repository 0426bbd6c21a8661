"""What a batch worker does: keep one Separator (model loaded once), separate item after item."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

_SEPARATOR = None


def init_worker(options: dict[str, Any], threads: int, parent_pid: int | None = None) -> None:
    """Load the model once per worker process (or Ray actor); with ``parent_pid``, die with that parent."""
    global _SEPARATOR
    import torch

    if parent_pid is not None:
        die_with_parent(parent_pid)
    from ..options import SeparationOptions
    from ..separation import Separator

    torch.set_num_threads(max(1, threads))
    _SEPARATOR = Separator(options=SeparationOptions.from_mapping({**options, "overwrite": True}))


def die_with_parent(parent_pid: int, every: float = 0.2) -> None:
    """End this process as soon as ``parent_pid`` is no longer its parent (the parent died, even by
    ``kill -9``, and the process was re-parented): a worker never goes on writing outputs for a batch
    that is gone. Linux also gets ``PR_SET_PDEATHSIG`` (SIGKILL at the parent's death); a watchdog thread
    polling the parent id covers the rest, and the moment between the two."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # it died before we could ask
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def process_one(path: str, outputs: dict[str, str]) -> dict[str, Any]:
    """Separate one input into its planned outputs; a failure is a record, never an exception."""
    from ..errors import DemixerError

    if _SEPARATOR is None:
        raise RuntimeError("init_worker() must run in this process first")
    start = time.perf_counter()
    record: dict[str, Any] = {
        "input": path,
        "outputs": outputs,
        "model": _SEPARATOR.model_name,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        result = _SEPARATOR.separate_to_files(path, {k: Path(v) for k, v in outputs.items()})
        record.update(
            status="ok",
            duration=round(result.duration, 4),
            seconds=round(result.seconds, 3),
            rtf=round(result.rtf, 4),
            quality=result.quality,
            error=None,
        )
    except DemixerError as exc:
        record.update(status="failed", error=str(exc), seconds=round(time.perf_counter() - start, 3))
    except Exception as exc:  # a bug or a broken file must not stop the batch; the record says what happened
        record.update(
            status="failed", error=f"{type(exc).__name__}: {exc}", seconds=round(time.perf_counter() - start, 3)
        )
    return record


class Worker:
    """The same worker as a class, for engines that keep state in an object (Ray actors)."""

    def __init__(self, options: dict[str, Any], threads: int) -> None:
        init_worker(options, threads)

    def process(self, path: str, outputs: dict[str, str]) -> dict[str, Any]:
        return process_one(path, outputs)
