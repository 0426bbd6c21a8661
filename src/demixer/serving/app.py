"""The FastAPI application: job API, Prometheus metrics, and the web page (all served offline)."""

from __future__ import annotations

import hmac
import json
import logging
import re
import shutil
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request, Response, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..audio.io import iter_blocks, load_audio, probe
from ..cleanup.options import CleanOptions
from ..errors import AudioError, DemixerError, ModelNotFoundError, OptionsError
from ..models.defaults import check_speaker_count
from ..models.registry import default_model_for, describe_models, list_models
from ..options import SeparationOptions
from ..pretrained import manifest_entry, status
from ..separation.stems import StemPlan
from ..version import __version__
from .forms import (
    CLEAN_FORM_FIELDS,
    MAX_ENROLL_SECONDS,
    Accepted,
    CleanForm,
    JobForm,
    JobView,
    download_stem,
    safe_filename,
)
from .jobs import JobRunner, QueueFull
from .metrics import ServiceMetrics
from .settings import ServerSettings, job_memory_mb, longest_job_seconds
from .store import Job, JobStore

log = logging.getLogger("demixer.serve")
STATIC = Path(str(resources.files("demixer") / "serving" / "static"))
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, counting bytes as they stream in.

    A declared ``Content-Length`` over the limit is refused before any byte is read; a body that
    grows past it (chunked uploads) is cut off and the app's answer replaced by the 413.
    """

    def __init__(self, app, max_bytes: int, on_reject) -> None:
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def _reply_413(self, send) -> None:
        mb = self.max_bytes / 1024 / 1024
        body = json.dumps({"detail": f"upload too large: this server accepts at most {mb:g} MB per request"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.on_reject()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reply_413(send)
        state = {"seen": 0, "over": False, "started": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["over"]:
                if not state["started"]:
                    state["started"] = True
                    await self._reply_413(send)
                return
            state["started"] = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
        if state["over"] and not state["started"]:
            await self._reply_413(send)


#: what an upload endpoint may answer besides 202
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "upload too large or too long"},
    415: {"description": "not audio"},
    422: {"description": "bad options"},
    429: {"description": "queue full (see Retry-After)"},
}


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Build the service. Jobs start running when the app starts (``lifespan``)."""
    settings = settings or ServerSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.data_dir / "jobs.sqlite3")
    metrics = ServiceMetrics(store)
    runner = JobRunner(store, settings, metrics)
    registered = {e.name for e in list_models()}
    test_models = {e.name for e in list_models() if e.kind == "test"}  # random weights: smoke tests only

    def _cached_published(name: str) -> bool:
        """A published model whose files are all in the model cache (the service never downloads)."""
        entry = manifest_entry(name)
        return entry is not None and all(f.present for f in status(entry))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        runner.start()
        log.info(
            "demixer serve: data in %s, %d worker(s), queue %d",
            settings.data_dir,
            settings.workers,
            settings.queue_size,
        )
        try:
            yield
        finally:
            runner.stop()
            store.close()

    app = FastAPI(
        title="demixer",
        version=__version__,
        lifespan=lifespan,
        description="Audio source separation as a service: upload a recording, get its stems.",
    )
    app.state.settings, app.state.store, app.state.runner, app.state.metrics = settings, store, runner, metrics

    def require_key(request: Request) -> None:
        if not settings.api_key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(
                401, "missing or wrong API key (send X-API-Key: KEY)", headers={"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(require_key)]

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(request.method, getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    def find(job_id: str) -> Job:
        job = store.get(job_id) if job_id.isalnum() else None
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    def finished(job_id: str) -> Job:
        job = find(job_id)
        if job.state == "expired":
            raise HTTPException(410, f"job {job_id}'s results were removed after {settings.ttl_hours:g} h")
        if job.state != "done":
            raise HTTPException(409, f"job {job_id} is {job.state}" + (f": {job.error}" if job.error else ""))
        return job

    # -- pages and service info ---------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and the limits a client should know."""
        counts = store.counts()
        return {
            "status": "ok",
            "version": __version__,
            "workers": settings.workers,
            "queue_size": settings.queue_size,
            "queued": counts["queued"],
            "running": counts["running"],
            "auth": bool(settings.api_key),
            "max_upload_mb": settings.max_upload_mb,
            "max_duration_s": settings.max_duration_s,
            "max_memory_mb": settings.max_memory_mb,
            "ttl_hours": settings.ttl_hours,
        }

    @app.get("/models", tags=["service"], dependencies=auth)
    def models() -> list[dict[str, Any]]:
        """Models a job may name (``name``), with their stems and the tasks they are the default for."""
        return [m for m in describe_models() if m["kind"] != "test" and (m["kind"] != "published" or m["cached"])]

    @app.get("/metrics", tags=["service"], include_in_schema=True)
    def prometheus() -> Response:
        """Prometheus exposition: jobs by state, queue length, job durations, real-time factors."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def read_form(form: Any, *uploads: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A submitted form's option values, and its uploaded files by field (the form models are built at import
        time from the options dataclasses: mypy cannot see their fields)."""
        return form.model_dump(exclude=set(uploads)), {name: getattr(form, name) for name in uploads}

    def check_room() -> None:
        """Refuse a new upload at once (429) when the queue is full."""
        try:
            runner.check_room()
        except QueueFull as exc:
            metrics.rejected.labels("queue_full").inc()
            raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None

    def servable(name: str) -> None:
        """Raise :class:`ModelNotFoundError` unless this server can run the model ``name``."""
        if name in test_models:
            raise ModelNotFoundError(f"{name} is a test model with random weights; this service does not run it")
        if name not in registered and not _cached_published(name):
            raise ModelNotFoundError(
                f"unknown model {name!r} (GET /models lists them)"
                + (
                    "; it is a published model not downloaded on this server (the operator can run "
                    f"`demixer models download {name}`)"
                    if manifest_entry(name)
                    else ""
                )
            )

    # -- jobs -------------------------------------------------------------------------------------
    @app.post(
        "/jobs",
        status_code=202,
        response_model=Accepted,
        tags=["jobs"],
        dependencies=auth,
        responses=UPLOAD_RESPONSES,
    )
    def create_job(response: Response, form: Annotated[JobForm, Form()]) -> Accepted:  # type: ignore[valid-type]
        """Upload a recording and queue its separation. Returns the job id at once (202)."""
        check_room()
        values, files = read_form(form, "file", "enroll")
        file, enroll = files["file"], files["enroll"]
        try:
            opts = SeparationOptions.from_mapping(values)
            limits = opts.over_limits()
            if limits:
                raise OptionsError("; ".join(limits))
            if opts.name is not None:
                servable(opts.name)
            model_name = opts.name or default_model_for(opts.task, opts.two_stems, opts.speakers)
            model = runner.models.get(model_name)
            check_speaker_count(model_name, tuple(model.sources), opts.speakers)
            wants = getattr(model, "needs_enrollment", False)
            if wants and enroll is None:
                raise OptionsError(f"enroll: {model_name} keeps one voice; upload a clip of it as the `enroll` file")
            if enroll is not None and not wants:
                raise OptionsError(f"enroll: {model_name} does not take an enrolment clip (use task extract)")
            plan = StemPlan.for_model(model, opts.two_stems, opts.stems, opts.atten_lim)
        except (OptionsError, ModelNotFoundError) as exc:
            metrics.rejected.labels("options").inc()
            raise HTTPException(422, str(exc)) from None
        values["stems"] = opts.stems
        extra = {}
        if enroll is not None:
            values["enroll"] = "enroll"  # the job folder's file (no server path is shown to clients)
            extra["enroll"] = (enroll, lambda path: _check_enrollment(path, model))
        return queue(response, file, values, model_name, opts, len(plan.outputs), extra)

    @app.post(
        "/clean",
        status_code=202,
        response_model=Accepted,
        tags=["jobs"],
        dependencies=auth,
        responses=UPLOAD_RESPONSES,
    )
    def create_clean_job(response: Response, form: Annotated[CleanForm, Form()]) -> Accepted:  # type: ignore[valid-type]
        """Upload spoken audio and queue its cleanup (``demixer clean``: dialogue separation, denoising,
        loudness, true-peak limit). The job's stems are ``speech`` (cleaned) and the removed parts."""
        check_room()
        values, files = read_form(form, "file")
        file = files["file"]
        try:
            opts = CleanOptions.from_mapping({**values, "skip": values["skip"] or []})
            names = []
            if opts.runs("dialogue"):
                names.append(opts.dialogue_model or default_model_for("dialogue"))
            if opts.runs("denoise"):
                names.append(opts.denoiser)
            for name in names:
                servable(name)
        except (OptionsError, ModelNotFoundError) as exc:
            metrics.rejected.labels("options").inc()
            raise HTTPException(422, str(exc)) from None
        values = {"kind": "clean", **{k: v for k, v in opts.as_dict().items() if k in CLEAN_FORM_FIELDS}}
        model = "clean: " + (" + ".join(names) if names else "loudness only")
        return queue(response, file, values, model, SeparationOptions(), 4)

    def queue(
        response: Response,
        file: UploadFile,
        values: dict[str, Any],
        model_name: str,
        opts: SeparationOptions,
        stems: int,
        extra: dict[str, tuple[UploadFile, Any]] | None = None,
    ) -> Accepted:
        """Save the upload (and any ``extra`` files, each checked by its function), check it is audio that
        fits, and queue its job (202), or refuse it."""
        filename = safe_filename(file.filename)
        job_id, folder = runner.new_job_dir()
        try:
            target = folder / "input"
            _save(file, target)
            for name, (upload, check) in (extra or {}).items():
                _save(upload, folder / name)
                check(folder / name)
            info = _check_audio(target, filename, opts, settings, stems)
            job = Job(
                id=job_id,
                state="queued",
                filename=filename,
                options=values,
                model=model_name,
                created=time.time(),
                duration=info[0],
                sample_rate=info[1],
                channels=info[2],
            )
            runner.submit(job)
        except QueueFull as exc:
            shutil.rmtree(folder, ignore_errors=True)
            metrics.rejected.labels("queue_full").inc()
            raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        except HTTPException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            metrics.rejected.labels({413: "too_long", 422: "options"}.get(exc.status_code, "not_audio")).inc()
            raise
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        response.headers["Location"] = f"/jobs/{job_id}"
        return Accepted(id=job_id, state="queued", url=f"/jobs/{job_id}")

    @app.get("/jobs", tags=["jobs"], dependencies=auth)
    def list_jobs(limit: int = 50) -> list[JobView]:
        """The most recent jobs, newest first."""
        return [JobView.of(j) for j in store.list(max(1, min(limit, 500)))]

    @app.get("/jobs/{job_id}", tags=["jobs"], dependencies=auth)
    def get_job(job_id: str) -> JobView:
        """State, progress (0..1), timings and, once done, stems, quality signals and download URLs."""
        return JobView.of(find(job_id))

    @app.get("/jobs/{job_id}/stems/{stem}", tags=["jobs"], dependencies=auth, response_class=FileResponse)
    def get_stem(job_id: str, stem: str) -> FileResponse:
        """One separated stem, in the format the job asked for."""
        job = finished(job_id)
        if stem not in (job.stems or []):
            raise HTTPException(404, f"job {job_id} has no stem {stem!r}; it has {', '.join(job.stems or [])}")
        return FileResponse(
            runner.stem_path(job, stem),
            media_type=MEDIA_TYPES.get(job.extension or "", "application/octet-stream"),
            filename=f"{download_stem(job.filename)}_{stem}.{job.extension}",
        )

    @app.get("/jobs/{job_id}/images/{stem}/{kind}", tags=["jobs"], dependencies=auth, response_class=FileResponse)
    def get_image(job_id: str, stem: str, kind: str) -> FileResponse:
        """A PNG of a stem (or ``mixture``): ``waveform`` or ``spectrogram``."""
        job = finished(job_id)
        if stem not in ["mixture", *(job.stems or [])] or kind not in ("waveform", "spectrogram"):
            raise HTTPException(404, f"no {kind} image of {stem!r} in job {job_id}")
        return FileResponse(runner.image_path(job, stem, kind), media_type="image/png")

    @app.get("/jobs/{job_id}/archive", tags=["jobs"], dependencies=auth, response_class=FileResponse)
    def get_archive(job_id: str) -> FileResponse:
        """All stems (and the quality signals) in one zip."""
        job = finished(job_id)
        name = download_stem(job.filename)
        return FileResponse(runner.archive(job, name), media_type="application/zip", filename=f"{name}_stems.zip")

    @app.delete("/jobs/{job_id}", status_code=204, tags=["jobs"], dependencies=auth)
    def delete_job(job_id: str) -> Response:
        """Cancel a job (a running one stops within a second or so) and delete its files."""
        find(job_id)
        runner.delete(job_id)
        return Response(status_code=204)

    app.add_middleware(
        BodyLimit, max_bytes=settings.max_upload_bytes, on_reject=lambda: metrics.rejected.labels("too_large").inc()
    )
    return app


def _save(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1024 * 1024)


def _check_enrollment(path: Path, model: Any) -> None:
    """Refuse an enrolment clip that is not audio (415), too long (413), or that the model refuses (422: too
    short, silent, several voices), before the job is queued. The model is not changed (a copy is enrolled)."""
    import copy

    try:
        info = probe(path)
    except DemixerError as exc:
        raise HTTPException(415, f"enroll: {exc.reason if isinstance(exc, AudioError) else exc}") from None
    if info.duration > MAX_ENROLL_SECONDS:
        raise HTTPException(
            413, f"enroll: {info.duration:.0f} s; an enrolment clip is at most {MAX_ENROLL_SECONDS:g} s"
        )
    audio, rate = load_audio(path)
    try:
        copy.deepcopy(model).enroll(audio, rate)
    except OptionsError as exc:
        raise HTTPException(422, str(exc).replace("--enroll", "enroll")) from None


def _check_audio(
    path: Path, filename: str, opts: SeparationOptions, settings: ServerSettings, stems: int
) -> tuple[float, int, int]:
    """Decode the upload's header and first second; refuse non-audio (415), over-long audio and jobs whose
    memory estimate is over the limit (413).

    Returns:
        ``(seconds to separate, sample rate, channels)``.
    """
    try:
        info = probe(path)
        next(iter(iter_blocks(info, block_frames=info.sample_rate)), None)
    except DemixerError as exc:  # the message names the upload, never the server's path
        reason = exc.reason if isinstance(exc, AudioError) else str(exc)
        reason = re.sub(r"'?/[^\s']*'?", repr(filename), reason)  # decoder messages quote (cut) server paths
        raise HTTPException(415, f"{filename}: {reason}") from None
    available = max(0.0, info.duration - opts.start)
    if available <= 0:
        raise HTTPException(
            422, f"{filename}: start={opts.start:g} s is past the end of the audio ({info.duration:.1f} s)"
        )
    seconds = min(available, opts.duration) if opts.duration else available
    if seconds > settings.max_duration_s:
        raise HTTPException(
            413,
            f"{filename}: {seconds:.0f} s of audio; this server separates at most "
            f"{settings.max_duration_s:g} s per job (use start/duration to pick a part)",
        )
    need = job_memory_mb(seconds, info.sample_rate, info.channels, stems)
    if need > settings.max_memory_mb:
        longest = longest_job_seconds(settings.max_memory_mb, info.sample_rate, info.channels, stems)
        raise HTTPException(
            413,
            f"{filename}: {seconds:.0f} s of {info.channels}-channel audio at {info.sample_rate} Hz with {stems} stems "
            f"needs about {need:.0f} MB; this server allows {settings.max_memory_mb:g} MB per job "
            f"(at most about {longest:.0f} s of this file: use start/duration, or fewer channels or a "
            "lower rate)",
        )
    return round(seconds, 3), info.sample_rate, info.channels
