"""``python launch.py [--port N] [--address A] [--data-dir DIR] [--no-show]``.

Starts ``panel serve dashboard/app.py`` with the options the dashboard needs:
localhost by default, the data directory, the upload size cap (which also
sets the websocket message limit) and a warm start (Datashader compiled before the
server listens, the Numba kernels compiled meanwhile in a separate process: see
:mod:`dashboard.warm`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboard.paths import check_data_dir, default_data_dir, websocket_message_bytes

APP_PATH = Path(__file__).resolve().parent / "app.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py", description="Serve the QUESTS dashboard (wraps `panel serve`)."
    )
    parser.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, localhost only)")
    parser.add_argument("--data-dir", default=None,
                        help="directory of structure files (default: sample_data)")
    parser.add_argument("--no-show", action="store_true", help="do not open a browser")
    parser.add_argument("--max-upload-mb", type=float, default=50.0,
                        help="largest upload in MB (default 50)")
    parser.add_argument("--job-mode", choices=["process", "thread"], default="process",
                        help="run computations in a worker process (default) or a thread")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="Tornado worker threads for callbacks (default: Panel's)")
    return parser


def panel_args(args: argparse.Namespace) -> list[str]:
    """The ``panel serve`` command line for parsed launcher options."""
    data_dir = check_data_dir(args.data_dir or default_data_dir())
    if not 0 < args.port < 65536:
        raise SystemExit(f"launch.py: port {args.port} is out of range")
    if args.max_upload_mb <= 0:
        raise SystemExit("launch.py: --max-upload-mb must be positive")
    origins = [f"{args.address}:{args.port}"]
    if args.address in ("127.0.0.1", "localhost"):
        origins = [f"127.0.0.1:{args.port}", f"localhost:{args.port}"]
    elif args.address in ("0.0.0.0", "::"):
        origins = ["*"]
    cmd = [
        "panel", "serve", str(APP_PATH),
        "--port", str(args.port),
        "--address", args.address,
        # uploads travel base64-encoded (4/3 of the file) in one websocket message; the
        # page refuses a larger file before sending it (dashboard.views.data.UploadGuard)
        "--websocket-max-message-size", str(websocket_message_bytes(args.max_upload_mb)),
        "--warm",
    ]
    for origin in origins:
        cmd += ["--allow-websocket-origin", origin]
    if args.num_threads:
        cmd += ["--num-threads", str(args.num_threads)]
    if not args.no_show:
        cmd.append("--show")
    cmd += ["--args", "--data-dir", str(data_dir), "--max-upload-mb", str(args.max_upload_mb),
            "--job-mode", args.job_mode,
            "--websocket-max-bytes", str(websocket_message_bytes(args.max_upload_mb))]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run ``panel serve`` in this process (blocks until stopped)."""
    args = build_parser().parse_args(argv)
    cmd = panel_args(args)
    from panel.command import main as panel_main

    from dashboard.warm import server_start

    # before the server listens: quests_core's Numba kernels compile into the on-disk
    # cache in a separate process while Datashader's compile in this one
    server_start(standby=args.job_mode == "process")
    sys.argv = cmd
    panel_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
