"""What the HTTP API reads and returns: the upload form (built from SeparationOptions) and job views."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
import unicodedata
from typing import Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, create_model

from ..cleanup.options import CleanOptions
from ..options import TASK_NAMES, SeparationOptions
from ..separation.naming import track_name
from .store import Job

#: SeparationOptions fields a client may set. Paths, devices, parallelism and overwriting belong to the server.
FORM_FIELDS = (
    "name",
    "task",
    "speakers",
    "two_stems",
    "stems",
    "segment",
    "overlap",
    "shifts",
    "speed",
    "atten_lim",
    "start",
    "duration",
    "flac",
    "mp3",
    "mp3_bitrate",
    "int24",
    "float32",
    "clip_mode",
    "report",
)
#: Form defaults that differ from the CLI's: the service computes quality signals unless told not to.
FORM_DEFAULTS = {"report": True}


def _form_model() -> type[BaseModel]:
    hints = typing.get_type_hints(SeparationOptions)
    defaults = SeparationOptions()
    fields: dict[str, Any] = {
        "file": (UploadFile, Field(description="the recording (any format FFmpeg decodes)")),
        "enroll": (
            UploadFile | None,
            Field(None, description="target-speaker extraction (task extract): a clip of the voice to keep"),
        ),
    }
    for f in dataclasses.fields(SeparationOptions):
        if f.name not in FORM_FIELDS:
            continue
        kind = hints[f.name]
        if f.name == "stems":
            kind = str | None  # comma-separated in a form
        elif f.name == "task":
            kind = Literal[TASK_NAMES]
        elif f.name == "clip_mode":
            kind = Literal["rescale", "clamp", "none"]
        elif f.name == "speed":
            kind = Literal["exact", "fast"]
        default = FORM_DEFAULTS.get(f.name, getattr(defaults, f.name))
        fields[f.name] = (kind, Field(default, description=f.metadata["help"]))
    return create_model("JobForm", __config__=ConfigDict(extra="forbid"), **fields)


JobForm = _form_model()
JobForm.__doc__ = "Separation options of a job: the CLI's long flags with `_` for `-` (server-side fields excluded)."
MAX_ENROLL_SECONDS = 60.0  # an enrolment clip is a few seconds of one voice; more is refused (413)


#: CleanOptions fields a client may set (``POST /clean``); outputs, devices and provenance stay server-side.
CLEAN_FORM_FIELDS = (
    "dialogue_model",
    "denoiser",
    "skip",
    "presence_db",
    "keep_music",
    "atten_lim",
    "lufs",
    "true_peak",
)


def _clean_form_model() -> type[BaseModel]:
    hints = typing.get_type_hints(CleanOptions)
    defaults = CleanOptions()
    fields: dict[str, Any] = {"file": (UploadFile, Field(description="the recording (any format FFmpeg decodes)"))}
    for f in dataclasses.fields(CleanOptions):
        if f.name in CLEAN_FORM_FIELDS:
            kind = str | None if f.name == "skip" else hints[f.name]  # skip: comma-separated in a form
            default = None if f.name == "skip" else getattr(defaults, f.name)
            fields[f.name] = (kind, Field(default, description=f.metadata["help"]))
    return create_model("CleanForm", __config__=ConfigDict(extra="forbid"), **fields)


CleanForm = _clean_form_model()
CleanForm.__doc__ = "Cleanup options of a job: `demixer clean`'s long flags with `_` for `-`."


class JobView(BaseModel):
    """A job as ``GET /jobs/{id}`` shows it."""

    id: str
    state: str
    stage: str
    progress: float
    filename: str
    model: str
    options: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    attempts: int
    duration: float | None = Field(None, description="seconds of audio separated")
    sample_rate: int | None
    channels: int | None
    stems: list[str] | None
    timings: dict[str, Any] | None
    quality: dict[str, Any] | None
    error: str | None
    urls: dict[str, Any]

    @classmethod
    def of(cls, job: Job) -> JobView:
        base = f"/jobs/{job.id}"
        urls: dict[str, Any] = {"self": base}
        if job.state == "done" and job.stems:
            urls["stems"] = {s: f"{base}/stems/{s}" for s in job.stems}
            urls["images"] = {
                s: {k: f"{base}/images/{s}/{k}" for k in ("waveform", "spectrogram")} for s in ["mixture", *job.stems]
            }
            urls["archive"] = f"{base}/archive"
        fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(Job)}
        # JSON has no infinity: `atten_lim: inf` (no limit) is shown as the string the form takes, not as null
        fields["options"] = {
            k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in job.options.items()
        }
        return cls(**fields, urls=urls)


class Accepted(BaseModel):
    id: str
    state: str
    url: str


def safe_filename(name: str | None, fallback: str = "upload") -> str:
    """A display name from a client's filename: the last path part, printable, at most 120 characters.

    It is only ever shown or used as a download name, never as a path on the server.
    """
    text = unicodedata.normalize("NFC", str(name or ""))
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(c for c in text if c.isprintable() and c not in '"<>|:*?').strip(" .")
    return text[:120] or fallback


def download_stem(name: str) -> str:
    """The track part of download names: the upload's track name (as ``separate`` names it), ASCII-safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", track_name(name)).strip("_") or "track"
