"""Runs jobs: a bounded queue (in the job table), a fixed pool of worker threads, retention clean-up.

A job's files live in ``DATA/jobs/<id>/``: ``input`` (the upload, named by no user), ``stems/``,
``images/`` and, once asked for, ``archive.zip``. Models are loaded once and shared by the workers.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..devices import resolve_device
from ..errors import DemixerError
from ..files import atomic_path
from ..models.base import SeparationModel
from ..models.registry import load_for_inference
from ..options import SeparationOptions
from ..separation.memory import release_free_memory
from .metrics import ServiceMetrics
from .settings import ServerSettings
from .store import Job, JobStore

log = logging.getLogger("demixer.serve")


@dataclass
class _Done:
    """What a job's work produced, as the bookkeeping needs it."""

    outputs: dict[str, Path]
    duration: float
    seconds: float

    @property
    def rtf(self) -> float:
        return self.seconds / self.duration if self.duration else float("nan")


class QueueFull(Exception):
    """No room in the queue; ``retry_after`` is a guess in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry in about {retry_after} s")
        self.retry_after = retry_after


class _Stop(Exception):
    """Raised inside a running job when the server shuts down (the job goes back to the queue)."""


class _Cancelled(Exception):
    """Raised inside a running job that was deleted."""


class ModelCache:
    """Loaded models shared by all workers (least recently used dropped beyond ``size``)."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, str], SeparationModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, speed: str = "exact") -> SeparationModel:
        """The model ``name`` ready to separate at ``speed`` (exact or fast; each kept once)."""
        key = (name, speed)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        # the service never downloads
        model = load_for_inference(name, speed=speed, device=str(resolve_device("auto")), offline=True, progress=False)
        with self._lock:
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


class JobRunner:
    """Accepts jobs, runs them on ``settings.workers`` threads, and expires old results."""

    def __init__(self, store: JobStore, settings: ServerSettings, metrics: ServiceMetrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.models = ModelCache()
        self.jobs_dir = settings.data_dir / "jobs"
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._submit_lock = threading.Lock()
        self._archive_lock = threading.Lock()
        # job seconds per audio second, measured on finished jobs (a prior until the first one finishes)
        self._seconds_per_audio_second = 0.5
        self._measured = False

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        requeued, failed = self.store.recover(self.settings.max_attempts)
        for job_id in requeued:
            log.warning("job %s was interrupted by a server stop: queued again", job_id)
        for job_id in failed:
            log.warning("job %s was interrupted and is out of attempts: marked failed", job_id)
        known = self.store.ids()
        for folder in self.jobs_dir.iterdir():  # uploads cut off before their job was recorded
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            # no job runs yet: engine work folders and temporary files are what a crash left behind
            for leftover in [*folder.rglob(".demixer-work-*"), *folder.rglob(".*.part")]:
                log.warning("removing %s, left by an interrupted job", leftover)
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        if self.settings.threads:
            import torch

            torch.set_num_threads(self.settings.threads)
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._work, name=f"demixer-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._janitor, name="demixer-janitor", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)

    # -- paths ------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def new_job_dir(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True)
        return job_id, folder

    def stem_path(self, job: Job, stem: str) -> Path:
        return self.job_dir(job.id) / "stems" / f"{stem}.{job.extension}"

    def image_path(self, job: Job, stem: str, kind: str) -> Path:
        return self.job_dir(job.id) / "images" / f"{stem}.{kind}.png"

    # -- submitting and cancelling ---------------------------------------------------------------
    #: the longest Retry-After a client is told: past it, polling again costs nothing
    RETRY_AFTER_CAP = 120

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely free: one queued job's worth of audio (their mean) at the
        measured speed, shared by the workers; 1 to :attr:`RETRY_AFTER_CAP`."""
        queued = self.store.count("queued")
        per_job = self.store.audio_seconds("queued") / max(1, queued)
        work = per_job * self._seconds_per_audio_second / self.settings.workers
        return int(min(self.RETRY_AFTER_CAP, max(1, math.ceil(work))))

    def check_room(self) -> None:
        """Raise :class:`QueueFull` if no job can be queued now."""
        if self.store.count("queued") >= self.settings.queue_size:
            raise QueueFull(self.retry_after())

    def submit(self, job: Job) -> None:
        """Queue a job whose input is already in its folder (atomic with the room check)."""
        with self._submit_lock:
            self.check_room()
            self.store.insert(job)
        with self._wake:
            self._wake.notify()

    def delete(self, job_id: str) -> None:
        """Remove a job and its files; a running job stops at its next progress report."""
        if self.store.set_state_if(job_id, ("running",), state="cancelled", stage="cancelled", finished=time.time()):
            self._cancel.add(job_id)  # the worker removes the files when it notices
            return
        self.store.delete(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    # -- the workers ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            self._run(job)
            release_free_memory()  # the job's buffers go back to the OS, so the server's size tracks its live jobs

    def _run(self, job: Job) -> None:
        folder = self.job_dir(job.id)
        queued_s = (job.started or time.time()) - job.created
        self.metrics.queue_seconds.observe(max(0.0, queued_s))
        last: list[Any] = [0.0, ""]  # time and stage of the last stored update

        def on_progress(info: dict[str, Any]) -> None:
            if self._stop.is_set():
                raise _Stop()
            if job.id in self._cancel:
                raise _Cancelled()
            now = time.monotonic()
            if now - last[0] > 0.25 or info["stage"] != last[1]:
                last[0], last[1] = now, info["stage"]
                self.store.update(job.id, stage=info["stage"], progress=round(float(info["progress"]), 4))

        t0 = time.time()
        try:
            work = self._clean if job.options.get("kind") == "clean" else self._separate
            result, ext, quality = work(job, folder, on_progress)
            finished = time.time()
            timings = {
                "queued_s": round(queued_s, 3),
                "separation_s": round(result.seconds, 3),
                "total_s": round(finished - t0, 3),
                "rtf": round(result.rtf, 4),
                "audio_s": round(result.duration, 3),
            }
            if not self.store.set_state_if(
                job.id,
                ("running",),
                state="done",
                stage="done",
                progress=1.0,
                finished=finished,
                stems=list(result.outputs),
                extension=ext,
                timings=timings,
                quality=quality,
                error=None,
            ):
                raise _Cancelled()
            self.metrics.job_seconds.labels("done").observe(finished - t0)
            self.metrics.rtf.observe(result.rtf)
            self.metrics.audio_seconds.inc(result.duration)
            if result.duration > 0:
                rate = (finished - t0) / result.duration
                mix = 0.3 if self._measured else 1.0  # the first measurement replaces the prior
                self._seconds_per_audio_second = (1 - mix) * self._seconds_per_audio_second + mix * rate
                self._measured = True
            log.info("job %s done: %.1f s of audio in %.1f s", job.id, result.duration, finished - t0)
        except _Stop:
            self.store.update(
                job.id, state="queued", stage="queued", progress=0.0, started=None, attempts=max(0, job.attempts - 1)
            )
            shutil.rmtree(folder / "stems", ignore_errors=True)
        except _Cancelled:
            self._cancel.discard(job.id)
            self.store.delete(job.id)
            shutil.rmtree(folder, ignore_errors=True)
        except Exception as exc:  # a failed job is a record, never a dead worker
            message = str(exc) if isinstance(exc, DemixerError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, DemixerError):
                log.exception("job %s failed", job.id)
            message = message.replace(str(folder / "input"), job.filename)
            self.store.set_state_if(
                job.id, ("running",), state="failed", stage="failed", finished=time.time(), error=message
            )
            self.metrics.job_seconds.labels("failed").observe(time.time() - t0)
            shutil.rmtree(folder / "stems", ignore_errors=True)

    def _separate(self, job: Job, folder: Path, on_progress: Any) -> tuple[Any, str, dict[str, Any] | None]:
        """A separation job: stems, then quality signals and images. Returns ``(result, extension, quality)``."""
        from ..separation import Separator

        enroll = str(folder / "enroll") if job.options.get("enroll") else None
        options = SeparationOptions.from_mapping({**job.options, "overwrite": True, "report": False, "enroll": enroll})
        model = self.models.get(job.model, options.speed)
        if getattr(model, "needs_enrollment", False):  # enrolment is the model's state: a job gets its own copy
            model = copy.deepcopy(model)
        separator = Separator(model=model, options=options.replace(name=job.model), callback=on_progress)
        ext = options.output_format.extension
        outputs = {s: folder / "stems" / f"{s}.{ext}" for s in separator.sources}
        result = separator.separate_to_files(folder / "input", outputs)
        on_progress({"stage": "analysing", "progress": 0.97})  # quality signals and images, block by block
        quality = separator.analyse(
            folder / "input", result.outputs, quality=job.options.get("report", True), images=folder / "images"
        )
        return result, ext, quality

    def _clean(self, job: Job, folder: Path, on_progress: Any) -> tuple[Any, str, dict[str, Any] | None]:
        """A cleanup job (``demixer clean``): the cleaned speech and the removed parts are its stems, the
        cleanup report its quality. Returns ``(result, extension, quality)``."""
        from ..cleanup import Cleaner, CleanOptions
        from ..evaluation.analysis import analyse_separation

        values = {k: v for k, v in job.options.items() if k != "kind"}
        options = CleanOptions.from_mapping({**values, "out": str(folder / "clean"), "overwrite": True})
        cleaner = Cleaner(options, callback=on_progress)
        cleaned = cleaner.clean_file(folder / "input")
        stems = folder / "stems"
        stems.mkdir(exist_ok=True)
        outputs = {}
        for name, path in cleaned.outputs.items():
            outputs[name] = stems / f"{name}.wav"
            path.replace(outputs[name])
        shutil.rmtree(folder / "clean", ignore_errors=True)
        on_progress({"stage": "analysing", "progress": 0.97})
        analyse_separation(folder / "input", outputs, quality=False, images=folder / "images")
        report = cleaned.report
        audio_s = report["duration_s"]
        return _Done(outputs, audio_s, cleaned.seconds), "wav", report

    # -- results --------------------------------------------------------------------------------
    def archive(self, job: Job, download_name: str) -> Path:
        """The job's zip (stems + quality signals), built once on first request."""
        path = self.job_dir(job.id) / "archive.zip"
        with self._archive_lock:
            if path.exists():
                return path
            compression = zipfile.ZIP_DEFLATED if job.extension == "wav" else zipfile.ZIP_STORED
            with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=compression) as zf:
                for stem in job.stems or []:
                    zf.write(self.stem_path(job, stem), f"{download_name}/{stem}.{job.extension}")
                if job.quality is not None:
                    zf.writestr(f"{download_name}/quality.json", json.dumps(job.quality, indent=1))
        return path

    def _janitor(self) -> None:
        while not self._stop.wait(self.settings.cleanup_every_s):
            try:
                self.expire()
            except Exception:  # keep cleaning on the next round
                log.exception("clean-up failed")

    def expire(self) -> list[str]:
        """Remove the files of jobs that finished more than ``ttl_hours`` ago; their records stay as ``expired``."""
        cutoff = time.time() - self.settings.ttl_hours * 3600
        expired = []
        for job_id in self.store.finished_before(cutoff):
            if self.store.set_state_if(job_id, ("done", "failed", "cancelled"), state="expired", stage="expired"):
                shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
                expired.append(job_id)
        return expired
