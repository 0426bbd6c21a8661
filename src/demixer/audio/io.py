"""Reading and probing audio files.

soundfile (libsndfile) reads wav/flac/ogg/mp3/aiff; PyAV (FFmpeg) reads everything else
(m4a/aac/opus/webm/mp4/...). The format is decided by decoding, never by the extension.
Every reader yields float32 blocks shaped ``[channels, frames]`` and checks them on the way:
a file that is empty, truncated, undecodable or holds NaN/Inf samples raises
:class:`~demixer.errors.AudioError` naming the file and the reason.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from .resample import resample

log = logging.getLogger("demixer")

#: Extensions picked up when a folder is given as input.
AUDIO_EXTENSIONS = (
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".mp3",
    ".aif",
    ".aiff",
    ".m4a",
    ".aac",
    ".opus",
    ".webm",
    ".mp4",
    ".mka",
    ".wma",
    ".caf",
    ".w64",
    ".rf64",
)

_SHOULD_BE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


@dataclass(frozen=True)
class AudioInfo:
    """What a probe learns about a file without decoding it all.

    ``frames`` is exact for libsndfile formats and an estimate (from the container's
    duration) for FFmpeg ones; readers never rely on it to stop.
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    backend: str  # "soundfile" or "pyav"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


#: Sample rates demixer accepts (a header outside them is damaged or hostile: a 2 GHz "WAV" would plan
#: chunks of billions of samples).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
MAX_CHANNELS = 64


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if not path.is_file():
        raise AudioError(path, "not a regular file (a FIFO, device or socket)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


_STDERR = threading.Lock()


@contextmanager
def _decoder_chatter(path: str | Path, active: bool) -> Iterator[None]:
    """While ``active``, what C decoders print on the process's stderr (libsndfile's mpg123: "Note: ...",
    "Warning: Xing stream size off ...") goes to the debug log (``--verbose``) instead of the terminal.

    Redirects file descriptor 2 for the duration of one call, under a lock; only MP3 reads use it.
    """
    if not active:
        yield
        return
    with _STDERR, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said = sink.read().decode(errors="replace").split("\n")
            for line in filter(None, (s.strip() for s in said)):
                log.debug("%s: decoder: %s", path, line)


def _looks_like_mp3(path: str | Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(3)
    return head == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _probe_soundfile(path: Path) -> AudioInfo | None:
    try:
        with _decoder_chatter(path, _looks_like_mp3(path)):
            info = sf.info(str(path))
    except Exception:  # libsndfile does not know it: let FFmpeg try
        return None
    match = _SHOULD_BE.search(info.extra_info or "")
    if match and int(match.group(1)) > int(match.group(2)):
        raise AudioError(
            path,
            f"truncated file: header announces {int(match.group(1))} data bytes, only {int(match.group(2))} present",
        )
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames), info.format, "soundfile")


def _probe_pyav(path: Path) -> AudioInfo:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in the file")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            channels = int(stream.codec_context.channels or 0)
            seconds = 0.0
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            fmt = container.format.name
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"unreadable: not a recognised audio file ({_short(exc)})") from None
    if rate <= 0 or channels <= 0:
        raise AudioError(path, "unsupported: the audio stream has no sample rate or channel count")
    return AudioInfo(str(path), rate, channels, int(round(seconds * rate)), fmt, "pyav")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Identify an audio file by decoding its header.

    Raises:
        AudioError: missing, empty, truncated or unrecognised file.
    """
    p = Path(path)
    _check_file(p)
    info = _probe_soundfile(p) or _probe_pyav(p)
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            p,
            f"unsupported sample rate {info.sample_rate} Hz in the header "
            f"(demixer reads {MIN_SAMPLE_RATE // 1000}-{MAX_SAMPLE_RATE // 1000} kHz)",
        )
    if info.channels > MAX_CHANNELS:
        raise AudioError(p, f"{info.channels} channels in the header (demixer reads at most {MAX_CHANNELS})")
    if _ogg_ends_early(p):
        log.warning(
            "warning: %s: the Ogg stream ends early (its last page is not an end-of-stream page): the file looks "
            "truncated; only its first %.1f s are read",
            p,
            info.duration,
        )
    return info


def _ogg_ends_early(path: Path, tail: int = 1 << 16) -> bool:
    """An Ogg file whose last page is cut short or lacks the end-of-stream flag (a truncated download or copy).

    Reads only the last ``tail`` bytes; ``False`` for anything that is not Ogg.
    """
    with open(path, "rb") as f:
        if f.read(4) != b"OggS":
            return False
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - tail))
        data = f.read()
    last = data.rfind(b"OggS")
    if last < 0 or len(data) - last < 27:
        return True
    segments = data[last + 26]
    if len(data) - last < 27 + segments:
        return True
    body = sum(data[last + 27 : last + 27 + segments])
    complete = len(data) - last >= 27 + segments + body
    return not complete or not data[last + 5] & 0x04  # header type flag 0x04: end of stream


def _check_block(path: str, block: np.ndarray, offset: int, sample_rate: int) -> None:
    if not np.isfinite(block).all():
        bad = int(np.argmax(~np.isfinite(block).all(axis=0)))
        raise AudioError(path, f"contains NaN or infinite samples (first at {(offset + bad) / sample_rate:.3f} s)")


def _iter_soundfile(info: AudioInfo, start: int, frames: int | None, block: int) -> Iterator[np.ndarray]:
    remaining = info.frames - start if frames is None else min(frames, info.frames - start)
    mp3 = info.format.upper() == "MP3"
    try:
        with _decoder_chatter(info.path, mp3):
            f = sf.SoundFile(info.path)
        with f:
            if start:
                with _decoder_chatter(info.path, mp3):
                    f.seek(start)
            pos = start
            while remaining > 0:
                with _decoder_chatter(info.path, mp3):
                    data = f.read(min(block, remaining), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    raise AudioError(info.path, f"truncated file: decoding stopped at {pos / info.sample_rate:.3f} s")
                out = np.ascontiguousarray(data.T)
                _check_block(info.path, out, pos, info.sample_rate)
                yield out
                pos += data.shape[0]
                remaining -= data.shape[0]
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(info.path, f"corrupt or truncated data: {_short(exc)}") from None


def _iter_pyav(info: AudioInfo, start: int, frames: int | None, block: int) -> Iterator[np.ndarray]:
    import av

    pending: list[np.ndarray] = []
    pending_frames = 0
    skip = start
    left = frames
    pos = start
    try:
        with av.open(info.path) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=None, rate=info.sample_rate)
            for packet_frame in container.decode(stream):
                for frame in resampler.resample(packet_frame):
                    data = frame.to_ndarray().astype(np.float32, copy=False)
                    if data.shape[0] != info.channels:  # FFmpeg reported another layout than the stream's
                        data = (
                            data[: info.channels]
                            if data.shape[0] > info.channels
                            else np.resize(data, (info.channels, data.shape[1]))
                        )
                    if skip:
                        cut = min(skip, data.shape[1])
                        data, skip = data[:, cut:], skip - cut
                    if left is not None:
                        data = data[:, :left]
                        left -= data.shape[1]
                    if data.shape[1]:
                        _check_block(info.path, data, pos, info.sample_rate)
                        pos += data.shape[1]
                        pending.append(data)
                        pending_frames += data.shape[1]
                    while pending_frames >= block:
                        joined = np.concatenate(pending, axis=1)
                        yield joined[:, :block]
                        rest = joined[:, block:]
                        pending, pending_frames = ([rest] if rest.shape[1] else []), rest.shape[1]
                    if left == 0:
                        break
                if left == 0:
                    break
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(
            info.path, f"corrupt or truncated data at {pos / info.sample_rate:.3f} s: {_short(exc)}"
        ) from None
    if pending_frames:
        yield np.concatenate(pending, axis=1)


def iter_blocks(
    path: str | os.PathLike[str] | AudioInfo,
    *,
    start: float = 0.0,
    duration: float | None = None,
    block_frames: int = 1 << 18,
) -> Iterator[np.ndarray]:
    """Decode a file block by block, in its own sample rate and channel count.

    Args:
        path: file path, or the :class:`AudioInfo` a probe returned.
        start: seconds to skip.
        duration: seconds to read (``None``: to the end).
        block_frames: frames per yielded block (the last may be shorter).

    Yields:
        float32 arrays. Shape: ``[channels, n]``.
    """
    info = path if isinstance(path, AudioInfo) else probe(path)
    if start < 0 or (duration is not None and duration <= 0):
        raise AudioError(info.path, f"invalid range: start={start} duration={duration}")
    first = int(round(start * info.sample_rate))
    count = None if duration is None else max(1, int(round(duration * info.sample_rate)))
    if info.backend == "soundfile" and first >= info.frames > 0:
        raise AudioError(info.path, f"start {start:.3f} s is past the end ({info.duration:.3f} s)")
    reader = _iter_soundfile if info.backend == "soundfile" else _iter_pyav
    return reader(info, first, count, block_frames)


def load_audio(
    path: str | os.PathLike[str],
    *,
    start: float = 0.0,
    duration: float | None = None,
    sample_rate: int | None = None,
    mono: bool = False,
) -> tuple[np.ndarray, int]:
    """Load a whole file (or a part of it) in memory: the one "load, downmix, resample" of the project.

    Args:
        path: any file soundfile or FFmpeg decodes.
        start, duration: the part to load, in seconds (``duration=None``: to the end).
        sample_rate: resample to this rate (soxr, high quality); ``None`` keeps the file's.
        mono: average the channels into one.

    Returns:
        ``(audio, sample_rate)`` with audio float32. Shape: ``[channels, frames]`` (``[1, frames]`` with ``mono``).

    Raises:
        AudioError: unreadable, empty, truncated, NaN/Inf or unsupported input.
    """
    info = probe(path)
    blocks = list(iter_blocks(info, start=start, duration=duration))
    if not blocks:
        raise AudioError(str(path), "contains no audio samples")
    audio = np.concatenate(blocks, axis=1)
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is None or sample_rate == info.sample_rate:
        return audio, info.sample_rate
    return resample(audio, info.sample_rate, sample_rate).astype(np.float32, copy=False), sample_rate


def load_stream(path: str | os.PathLike[str], stream: int) -> tuple[np.ndarray, int]:
    """Decode one audio stream of a multi-stream container (e.g. stream 4 of a MUSDB ``.stem.mp4``).

    Returns:
        ``(audio, sample_rate)`` with audio float32. Shape: ``[channels, frames]``.

    Raises:
        AudioError: missing file, no such stream, or undecodable data.
    """
    import av

    p = Path(path)
    _check_file(p)
    try:
        with av.open(str(p)) as container:
            streams = container.streams.audio
            if not 0 <= stream < len(streams):
                raise AudioError(p, f"has {len(streams)} audio streams, stream {stream} was asked for")
            st = streams[stream]
            rate = int(st.codec_context.sample_rate)
            resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
            blocks = [f.to_ndarray() for frame in container.decode(st) for f in resampler.resample(frame)]
            blocks += [f.to_ndarray() for f in resampler.resample(None)]
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(p, f"unreadable stream {stream}: {_short(exc)}") from None
    if not blocks:
        raise AudioError(p, f"stream {stream} contains no audio samples")
    audio = np.concatenate(blocks, axis=1).astype(np.float32, copy=False)
    _check_block(str(p), audio, 0, rate)
    return audio, rate


def count_streams(path: str | os.PathLike[str]) -> int:
    """Number of audio streams in a container (1 for plain audio files)."""
    import av

    p = Path(path)
    _check_file(p)
    try:
        with av.open(str(p)) as container:
            return len(container.streams.audio)
    except Exception as exc:
        raise AudioError(p, f"unreadable: {_short(exc)}") from None


def read_frames(info: AudioInfo, start: int, frames: int) -> np.ndarray:
    """Read exactly ``frames`` frames from ``start`` (zero-padded past the end). Shape: ``[channels, frames]``."""
    out = np.zeros((info.channels, frames), np.float32)
    if start >= info.frames > 0 or frames <= 0:
        return out
    if info.backend == "soundfile":
        with sf.SoundFile(info.path) as f:
            f.seek(max(0, start))
            data = f.read(frames, dtype="float32", always_2d=True).T
    else:
        blocks = list(_iter_pyav(info, max(0, start), frames, 1 << 20))
        data = np.concatenate(blocks, axis=1) if blocks else out[:, :0]
    out[:, : data.shape[1]] = data[:, :frames]
    return out
