"""``python launch.py [--port N] [--address A] [--data-dir DIR] [--no-show]``, or
``quests-dashboard serve [...]`` (the same options).

Starts ``panel serve dashboard/app.py`` with the options the dashboard needs:
localhost by default, the data directory (without ``--data-dir``: see
:func:`dashboard.paths.choose_data_dir`; one start-up line says which), the upload
size cap (which also
sets the websocket message limit) and a warm start (Datashader compiled before the
server listens, the Numba kernels compiled meanwhile in a separate process: see
:mod:`dashboard.warm`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboard.paths import (
    MAX_UPLOAD_MB,
    check_data_dir,
    choose_data_dir,
    websocket_message_bytes,
)

APP_PATH = Path(__file__).resolve().parent / "app.py"
#: The program name of ``python launch.py`` (``quests-dashboard serve`` passes its own).
PROG = "launch.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve the QUESTS dashboard (wraps `panel serve`)."
    )
    parser.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, localhost only)")
    parser.add_argument("--data-dir", default=None,
                        help="directory of structure files (default: $QUESTS_DATA_DIR, else "
                        "the current directory when it holds structure files, else "
                        "sample_data/ of a checkout, else the demo data shipped with the "
                        "package)")
    parser.add_argument("--no-show", action="store_true", help="do not open a browser")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB,
                        help="largest upload in MB (default 50)")
    parser.add_argument("--job-mode", choices=["process", "thread"], default="process",
                        help="run computations in a worker process (default) or a thread")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="Tornado worker threads for callbacks (default: Panel's)")
    return parser


def data_dir_choice(args: argparse.Namespace) -> tuple[Path, str]:
    """The data directory to serve (checked) and why (for the start-up line)."""
    if args.data_dir:
        return check_data_dir(args.data_dir), "from --data-dir"
    folder, why = choose_data_dir()
    return check_data_dir(folder), why


def panel_args(args: argparse.Namespace, prog: str = PROG) -> list[str]:
    """The ``panel serve`` command line for parsed launcher options."""
    data_dir = data_dir_choice(args)[0]
    if not 0 < args.port < 65536:
        raise SystemExit(f"{prog}: port {args.port} is out of range")
    if args.max_upload_mb <= 0:
        raise SystemExit(f"{prog}: --max-upload-mb must be positive")
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


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` and run ``panel serve`` in this process (blocks until stopped).

    ``prog`` names the command in the help and the messages (``quests-dashboard serve``
    when the CLI calls it). One line on stdout names the data directory and why.
    """
    args = build_parser(prog).parse_args(argv)
    data_dir, why = data_dir_choice(args)
    args.data_dir = str(data_dir)
    cmd = panel_args(args, prog)
    print(f"{prog}: data directory {data_dir} ({why})", flush=True)
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
