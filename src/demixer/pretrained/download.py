"""Resumable HTTP(S) downloads with a progress bar (standard library only; proxies from the environment).

A download appends to ``<file>.part``. An interrupted transfer (connection reset, timeout, short
body) is retried a few times, each time asking only for the missing bytes with a ``Range``
header; a server that ignores ranges sends the whole file again, which replaces the part.
The caller verifies the finished part and renames it.
"""

from __future__ import annotations

import http.client
import logging
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DownloadError

log = logging.getLogger("demixer")

ATTEMPTS = 5
TIMEOUT = 30.0  # seconds without data before a read gives up (then the transfer resumes)
_BLOCK = 1 << 16


def _user_agent() -> str:
    from ..version import __version__

    return f"demixer/{__version__} (+model download)"


def _request(url: str, start: int) -> urllib.request.Request:
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _total_from(response, start: int) -> int | None:
    """The whole file's size from a 206's Content-Range or a 200's Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].strip().isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (start if getattr(response, "status", 200) == 206 else 0)
    return None


def download(url: str, part: Path, size: int | None = None, *, progress: bool = True, label: str = "") -> Path:
    """Bring ``part`` to the complete content of ``url``, resuming what is already there.

    Args:
        url: ``http(s)://`` or ``file://``.
        part: the partial file (created or extended).
        size: the expected size in bytes, when known (used for the bar and to stop early).
        progress: draw a tqdm bar on stderr.
        label: the bar's text.

    Raises:
        DownloadError: after ``ATTEMPTS`` failed tries, or at once for HTTP errors other than
        transient ones (408, 429, 5xx). The partial file is kept for the next resume.
    """
    from tqdm.auto import tqdm

    part.parent.mkdir(parents=True, exist_ok=True)
    bar = None
    last_error = "no attempt"
    try:
        for attempt in range(1, ATTEMPTS + 1):
            have = part.stat().st_size if part.exists() else 0
            if size is not None and have >= size:
                return part
            try:
                with urllib.request.urlopen(_request(url, have), timeout=TIMEOUT) as response:
                    code = getattr(response, "status", 200)
                    if have and code != 206:  # the server ignored the range: start over
                        have = 0
                    total = _total_from(response, have) or size
                    mode = "ab" if have else "wb"
                    if bar is None and progress:
                        bar = tqdm(
                            total=total,
                            initial=have,
                            unit="B",
                            unit_scale=True,
                            unit_divisor=1024,
                            desc=label or part.name,
                            file=sys.stderr,
                            leave=False,
                            disable=None,
                        )
                    elif bar is not None:
                        bar.reset(total=total)
                        bar.update(have)
                    with open(part, mode) as out:
                        while block := response.read(_BLOCK):
                            out.write(block)
                            if bar is not None:
                                bar.update(len(block))
                    got = part.stat().st_size
                    if total is not None and got < total:
                        raise http.client.IncompleteRead(b"", total - got)
                    return part
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and have:  # nothing left to send: the part is complete (or too long)
                    return part
                last_error = f"HTTP {exc.code} {exc.reason} from {url}"
                if exc.code not in (408, 429) and exc.code < 500:
                    raise DownloadError(last_error) from None
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                last_error = f"{type(exc).__name__}: {reason} ({url})"
            if attempt < ATTEMPTS:
                wait = min(2 ** (attempt - 1), 8) * 0.5
                log.info("download of %s interrupted (%s); resuming in %.1f s", label or url, last_error, wait)
                time.sleep(wait)
    finally:
        if bar is not None:
            bar.close()
    raise DownloadError(f"download failed after {ATTEMPTS} attempts: {last_error}")


def free_space_ok(folder: Path, needed: int | None) -> bool:
    """Whether ``folder``'s file system has room for ``needed`` more bytes (unknown sizes pass)."""
    if needed is None:
        return True
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free > needed
