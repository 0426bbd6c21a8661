"""Provenance for forensic and archival use: records of how outputs were made (:mod:`.record`), their
printable rendering (:mod:`.html`), and re-checking them (:mod:`.verify`, ``demixer verify``)."""

from .record import FORMAT, ProvenanceRecorder, begin
from .verify import Verdict, verify_record

__all__ = ["FORMAT", "ProvenanceRecorder", "Verdict", "begin", "verify_record"]
