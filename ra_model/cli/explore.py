"""The ``ra-model explore`` command: start the what-if explorer web app and keep it running."""

from __future__ import annotations

import argparse
import sys
import threading

from ra_model.errors import InvalidValueError


def _cmd_explore(args: argparse.Namespace) -> int:
    from ra_model.app.server import serve

    if not 0 <= args.port <= 65535:
        raise InvalidValueError(f"--port {args.port}: use 0 (any free port) or a port number up to 65535")
    server = serve(host=args.host, port=args.port or None, show=not args.no_browser, allow_origins=args.allow_origin)
    sys.stdout.write(f"ra-model explorer running at {server.url}\n")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stdout.write(f"warning: listening on {args.host}, so other computers can reach this page\n")
    sys.stdout.write("press Ctrl+C to stop\n")
    sys.stdout.flush()
    try:
        _wait_until_interrupted()
    except KeyboardInterrupt:
        sys.stdout.write("stopping\n")
    finally:
        server.stop()
    return 0


def _wait_until_interrupted() -> None:
    """Block until Ctrl+C (KeyboardInterrupt); the server runs in its own thread meanwhile."""
    forever = threading.Event()
    while not forever.wait(0.5):
        pass


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``explore`` command to the ``ra-model`` sub-command parser."""
    p = sub.add_parser("explore", help="start the what-if explorer in the browser (local web app)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 exposes it to the network)",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    p.add_argument("--no-browser", action="store_true", help="do not open the page in the default browser")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="extra name the browser may use to reach the server (with --host other than 127.0.0.1)",
    )
    p.set_defaults(func=_cmd_explore)
