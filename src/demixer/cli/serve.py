"""``demixer serve``: the HTTP service and its web page."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP service and web page",
        description="Serve the job API (docs at /docs), Prometheus metrics at /metrics and the web page at /.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (beyond loopback needs --api-key) (default: 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="job files and database (default: the platform's user data dir, or $DEMIXER_SERVE_DIR)",
    )
    p.add_argument("--workers", type=int, default=1, help="jobs separated at once (default: 1)")
    p.add_argument("--queue-size", type=int, default=16, help="jobs allowed to wait; more get 429 (default: 16)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload in MB (default: 200)")
    p.add_argument("--max-duration", type=float, default=1200.0, help="longest audio in seconds (default: 1200)")
    p.add_argument(
        "--max-memory-mb",
        type=float,
        default=4096.0,
        help="most memory one job may need, estimated from channels x rate x seconds x stems at upload (default: 4096)",
    )
    p.add_argument("--ttl-hours", type=float, default=24.0, help="keep finished jobs' files this long (default: 24)")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=2,
        help="runs of a job interrupted by a server stop before it is marked failed (default: 2)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--api-key", default=None, help="require this key (X-API-Key header); default $DEMIXER_API_KEY")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..extras import require_extra

    require_extra("serve", "demixer serve")
    import uvicorn

    from ..serving import ServerSettings, create_app
    from ..serving.settings import default_data_dir

    settings = ServerSettings(
        data_dir=args.data_dir or default_data_dir(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        queue_size=args.queue_size,
        max_upload_mb=args.max_upload_mb,
        max_duration_s=args.max_duration,
        max_memory_mb=args.max_memory_mb,
        ttl_hours=args.ttl_hours,
        max_attempts=args.max_attempts,
        api_key=args.api_key,
        threads=args.threads,
    )
    app = create_app(settings)
    print(
        f"demixer serve: http://{args.host}:{args.port}/ (API docs at /docs), data in {settings.data_dir}", flush=True
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
