"""The ``ra-model explore`` command: start the what-if explorer web app and keep it running."""

from __future__ import annotations

import argparse
import sys
import threading

from ra_model.errors import InvalidValueError


def _cmd_explore(args: argparse.Namespace) -> int:
    from ra_model.app.server import is_loopback, serve

    if not 0 <= args.port <= 65535:
        raise InvalidValueError(f"--port {args.port}: use 0 (any free port) or a port number up to 65535")
    server = serve(
        host=args.host,
        port=args.port or None,
        show=not args.no_browser,
        allow_origins=args.allow_origin,
        token=args.token,
        require_token=False if args.no_token else None,
    )
    sys.stdout.write(f"ra-model explorer running at {server.url}\n")
    sys.stdout.write("press Ctrl+C to stop\n")
    sys.stdout.flush()
    if not is_loopback(args.host):
        sys.stderr.write(f"warning: listening on {args.host}, so other computers can reach this page\n")
        if args.no_token:
            sys.stderr.write(
                "warning: --no-token: anyone who can reach this computer can use the explorer without a token "
                "(and make it run simulations); leave --no-token out to require one\n"
            )
        else:
            sys.stderr.write("the address above carries the token; share it only with people who may use the page\n")
    sys.stderr.flush()
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
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        default=None,
        metavar="TEXT",
        help="token the page's address must carry (default: a random one when --host is beyond this computer)",
    )
    token.add_argument(
        "--no-token",
        action="store_true",
        help="serve without a token even beyond this computer (anyone who can reach it can use the page)",
    )
    p.set_defaults(func=_cmd_explore)
