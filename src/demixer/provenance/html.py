"""A printable HTML rendering of a provenance record (print it to PDF from any browser)."""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body { font: 11pt/1.4 sans-serif; margin: 2em; color: #111; }
h1 { font-size: 16pt; } h2 { font-size: 12pt; margin-top: 1.5em; border-bottom: 1px solid #999; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
td, th { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top; }
code, .hash { font-family: monospace; font-size: 9pt; word-break: break-all; }
@media print { body { margin: 0; } h2 { page-break-after: avoid; } table { page-break-inside: avoid; } }
"""


def _e(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"<code>{html.escape(json.dumps(value, ensure_ascii=False))}</code>"
    return html.escape("" if value is None else str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _format_cells(f: dict[str, Any]) -> str:
    if "sample_rate" not in f:
        return f"<td>{_e(f['container'])}, {_e(f['bytes'])} bytes</td><td></td>"
    return (
        f"<td>{_e(f['container'])} {_e(f.get('encoding') or '')}, {_e(f['sample_rate'])} Hz, {_e(f['channels'])} ch, "
        f"{_e(f['frames'])} frames{'' if f.get('frames_exact', True) else ' (estimated)'}</td>"
        f"<td>{_e(f['duration_s'])} s</td>"
    )


def _file_table(files: dict[str, dict[str, Any]]) -> str:
    head = "<tr><th>name</th><th>path</th><th>SHA-256</th><th>format</th><th>duration</th></tr>"
    body = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(f['path'])}</td><td class=hash>{_e(f['sha256'])}</td>{_format_cells(f)}</tr>"
        for name, f in files.items()
    )
    return f"<table>{head}{body}</table>"


def render_html(record: dict[str, Any]) -> str:
    """The record as one self-contained HTML page."""
    env = record["environment"]
    models = "".join(
        f"<h3>{_e(m['stage'])}: {_e(m['name'])} ({_e(m['kind'])})</h3>"
        + _table([(w["file"], w["sha256"]) for w in m["weights"]] or [("weights", "none (training-free)")])
        + (_table([("card", m["card"])]) if m.get("card") else "")
        for m in record["models"]
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>demixer provenance: {_e(record['input']['path'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Provenance record: demixer {_e(record['command'])}</h1>",
        f"<p>{_e(record['chain'])}</p>",
        _table(
            [
                ("started (UTC)", record["started_utc"]),
                ("finished (UTC)", record["finished_utc"]),
                ("record seal (SHA-256)", record["seal"]),
            ]
        ),
        "<h2>Input</h2>",
        _file_table({"input": record["input"]}),
        "<h2>Outputs</h2>",
        _file_table(record["outputs"]),
        "<h2>Format notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in record["notes"]) + "</ul>",
        "<h2>Options (defaults included)</h2>",
        _table(sorted(record["options"].items())),
        "<h2>Models</h2>",
        models,
        "<h2>Software and machine</h2>",
        _table([(k, v) for k, v in env.items() if k != "libraries"] + sorted(env["libraries"].items())),
        "<h2>Determinism</h2>",
        _table(sorted(record["determinism"].items())),
        "<h2>Quality signals</h2>",
        _table(sorted(record["quality"].items())) if record["quality"] else "<p>Not computed (--report).</p>",
        "<p>Check this record and re-run the work with <code>demixer verify provenance.json</code>.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
