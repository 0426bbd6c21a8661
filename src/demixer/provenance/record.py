"""Provenance records (``--provenance``): what a second examiner needs to reproduce and check the work.

A record (``provenance.json``, format ``demixer-provenance/1``) holds the SHA-256 and decoded format of the
input and of every output, every option (defaults included, each with its own digest), each model's card
and weight digests, the software and machine, the seed and determinism settings, UTC start and end times,
the quality signals, and the processing chain in plain words. ``seal`` is the SHA-256 of the rest, so
any later edit of the record is detected; ``section_digests`` and ``option_digests`` let
:mod:`demixer.provenance.verify` say which part, and which option, changed.
The seal detects accidents and careless edits; it is not a signature, since anyone can recompute it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.io import probe
from ..files import sha256_of, write_text_atomic
from ..version import __version__

FORMAT = "demixer-provenance/1"
SEED = 0
LIBRARIES = ("torch", "numpy", "scipy", "soundfile", "soxr", "av", "pyloudnorm", "onnxruntime", "speechmos")


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def canonical(value: Any) -> bytes:
    """The JSON bytes digests are taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def section_digests(record: dict[str, Any]) -> dict[str, str]:
    """One digest per top-level part of a record, so an edit can be traced to the part it touched."""
    return {k: digest(v) for k, v in record.items() if k not in ("seal", "section_digests")}


def seal_of(record: dict[str, Any]) -> str:
    return digest({k: v for k, v in record.items() if k != "seal"})


def file_facts(path: Path) -> dict[str, Any]:
    """SHA-256, size and (for audio) decoded format of a file."""
    facts = {"path": str(path), "sha256": sha256_of(path), "bytes": path.stat().st_size}
    if path.suffix.lower() == ".json":
        return {**facts, "container": "json"}
    info = probe(path)
    encoding = None
    if info.backend == "soundfile":
        import soundfile as sf

        encoding = sf.info(str(path)).subtype  # PCM_16, PCM_24, FLOAT, VORBIS, ...
    return {
        **facts,
        "container": info.format.lower(),
        "encoding": encoding,
        "decoder": info.backend,
        "frames_exact": info.backend == "soundfile",  # FFmpeg's frame counts come from the container's duration
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "frames": info.frames,
        "duration_s": round(info.frames / info.sample_rate, 6) if info.sample_rate else None,
    }


def _commit() -> str | None:
    """The git commit of the source tree demixer runs from, when it is a checkout; else None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+local changes" if dirty.stdout.strip() else "")


def environment(device: str) -> dict[str, Any]:
    """Software and machine facts that decide whether outputs can be reproduced bit for bit."""
    versions: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "demixer": __version__,
        "commit": _commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "libraries": versions,
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }


def determinism() -> dict[str, Any]:
    """Fix the seed and ask torch for deterministic kernels; returns the settings as recorded."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return {
        "seed": SEED,
        "torch_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "note": "bit-for-bit reproduction is expected on the same machine type, library versions and thread count",
    }


def model_record(stage: str, name: str) -> dict[str, Any]:
    """A model's identity: its card and the SHA-256 of its weight files (shipped, blend or published)."""
    from ..models.shipped import shipped_cards
    from ..pretrained import manifest_entry, model_dir

    cards = {c.name: c for c in shipped_cards()}
    if name in cards:
        card = cards[name]
        if "blend" in card.data:
            members = [model_record(stage, m) for m in card.data["blend"]["members"]]
            weights = [w for m in members for w in m["weights"]]
        else:
            weights = [{"file": card.weights.name, "sha256": sha256_of(card.weights)}]
        return {"stage": stage, "name": name, "kind": "shipped", "card": card.data, "weights": weights}
    entry = manifest_entry(name)
    if entry is not None:
        files = [model_dir(entry) / f.name for f in entry.files]
        return {
            "stage": stage,
            "name": name,
            "kind": "published",
            "card": {
                "architecture": entry.architecture,
                "licence": entry.licence,
                "homepage": entry.homepage,
                "published_quality": entry.published_quality,
            },
            "weights": [{"file": p.name, "sha256": sha256_of(p) if p.is_file() else None} for p in files],
        }
    path = Path(name)
    if path.is_file():  # a checkpoint given by path
        return {
            "stage": stage,
            "name": name,
            "kind": "checkpoint",
            "card": None,
            "weights": [{"file": path.name, "sha256": sha256_of(path)}],
        }
    return {"stage": stage, "name": name, "kind": "training-free", "card": None, "weights": []}


class ProvenanceRecorder:
    """Runs one piece of work (``clean`` or ``separate``) and writes its record beside the outputs.

    Args:
        command: ``clean`` or ``separate`` (what :mod:`~demixer.provenance.verify` re-runs).
        options: every option of the command, defaults included.
    """

    def __init__(self, command: str, options: dict[str, Any]) -> None:
        self.command = command
        self.options = options

    def record(
        self,
        input_path: Path,
        outputs: dict[str, Path],
        models: dict[str, str],
        started: str,
        quality: dict[str, Any] | None,
        chain: str,
        notes: list[str],
        device: str,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "format": FORMAT,
            "command": self.command,
            "started_utc": started,
            "finished_utc": now_utc(),
            "input": file_facts(input_path),
            "outputs": {name: file_facts(p) for name, p in outputs.items()},
            "options": self.options,
            "option_digests": {k: digest(v) for k, v in self.options.items()},
            "models": [model_record(stage, name) for stage, name in models.items()],
            "environment": environment(device),
            "determinism": settings,
            "quality": quality,
            "chain": chain,
            "notes": notes,
        }
        record["section_digests"] = section_digests(record)
        record["seal"] = seal_of(record)
        return record

    def write(self, record: dict[str, Any], folder: Path, stem: str = "provenance") -> dict[str, Path]:
        """``STEM.json`` and ``STEM.html`` in ``folder``; returns their paths."""
        from .html import render_html

        paths = {"provenance": folder / f"{stem}.json", "provenance_html": folder / f"{stem}.html"}
        write_text_atomic(paths["provenance"], json.dumps(record, indent=1, ensure_ascii=False))
        write_text_atomic(paths["provenance_html"], render_html(record))
        return paths

    def record_clean(self, cleaner: Any, path: Path, result: Any, started: str, settings: dict[str, Any]) -> None:
        """Record a finished ``clean`` of ``path``; the record's paths go into ``result.extra_files``."""
        report = result.report
        quality = {k: report[k] for k in ("loudness_in_lufs", "loudness_out_lufs", "true_peak_out_dbtp", "dnsmos")}
        removed = [n for n in result.outputs if n != "speech"]
        written = [f"the cleaned speech as 24-bit PCM ({result.outputs['speech'].suffix.lstrip('.')})"] + (
            [f"the removed parts ({', '.join(removed)}) as 32-bit float WAV"] if removed else []
        )
        record = self.record(
            Path(path),
            {**result.outputs, "report": result.report_path},
            cleaner.model_keys,
            started,
            {**quality, "stages": report["stages"]},
            report["chain"],
            format_notes(report["sample_rate"], report["channels"], cleaner.separators(), written),
            str(cleaner.device),
            settings,
        )
        result.extra_files.update(self.write(record, result.report_path.parent))

    def record_separation(
        self, separator: Any, path: Path, result: Any, started: str, settings: dict[str, Any], track: str
    ) -> None:
        """Record a finished ``separate`` of ``path`` as ``<track>.provenance.json`` beside the stems; the
        record's paths go into ``result.provenance_paths``."""
        files = dict(result.outputs)
        if result.quality_path is not None:
            files["quality"] = result.quality_path
        fmt = separator.options.output_format
        chain = (
            f"The input was separated with {separator.model_name} into {', '.join(result.outputs)}"
            + (
                f"; all stems were scaled by {20 * np.log10(result.gain):.2f} dB to avoid clipping"
                if result.gain != 1
                else ""
            )
            + (f"; {result.clipped_samples} samples were clamped to full scale" if result.clipped_samples else "")
            + "."
        )
        encoding = f"{fmt.container} ({fmt.encoding}" + (
            f", {fmt.mp3_bitrate} kb/s)" if fmt.container == "mp3" else ")"
        )
        record = self.record(
            Path(path),
            files,
            {"separate": separator.options.name or separator.model_name},
            started,
            result.quality,
            chain,
            format_notes(result.sample_rate, result.channels, {"separate": separator}, [f"the stems as {encoding}"]),
            str(separator.device),
            settings,
        )
        folder = next(iter(result.outputs.values())).parent
        result.provenance_paths = self.write(record, folder, f"{track}.provenance")


def begin() -> tuple[str, dict[str, Any]]:
    """Start a recorded piece of work: the UTC start time and the determinism settings now in force."""
    return now_utc(), determinism()


def format_notes(rate: int, channels: int, separators: dict[str, Any], written: list[str]) -> list[str]:
    """What happened to the audio's format, in plain words: decoding, resampling inside models, encodings."""
    notes = [f"The input was decoded to {channels} channel(s) at {rate} Hz and was not modified."]
    for stage, sep in separators.items():
        model_rate = sep.model.sample_rate
        if model_rate != rate:
            notes.append(
                f"{stage}: {sep.model_name} works at {model_rate} Hz: the audio was resampled to {model_rate} Hz for "
                f"it and its outputs back to {rate} Hz"
                + (
                    f"; the band above {model_rate // 2} Hz, which it cannot see, was shared among its outputs"
                    if model_rate < rate and len(sep.model.sources) > 1
                    else ""
                )
                + "."
            )
    notes += [f"Written at {rate} Hz: {w}." for w in written]
    return notes
