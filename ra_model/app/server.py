"""Serve the what-if explorer: start the Panel server in a background thread, wait for it, stop it."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import panel as pn

from ra_model.app.explorer import Explorer
from ra_model.errors import RAModelError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A running explorer server (in a background thread).

    Attributes:
        url: The page's address.
        host: Address the server listens on.
        port: Its port.
    """

    url: str
    host: str
    port: int
    _thread: Any

    def stop(self) -> None:
        """Stop the server and wait for its thread to end."""
        self._thread.stop()
        self._thread.join(timeout=10)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    show: bool = False,
    allow_origins: Sequence[str] = (),
    app_factory: Callable[[], pn.viewable.Viewable] | None = None,
    timeout_s: float = 30.0,
) -> RunningServer:
    """Start the explorer in a background thread and return once it answers.

    Sliders report their value when released (``pn.config.throttled``), so dragging does not queue a
    run for every pixel.

    Args:
        host: Address to listen on; the default listens on this computer only.
        port: TCP port; None picks a free one.
        show: Open the page in the default browser.
        allow_origins: Extra ``host[:port]`` names the browser may use to reach the server (needed
            only when listening beyond 127.0.0.1 and reaching it by another name).
        app_factory: Builds the page of one browser session; defaults to ``Explorer().view()``.
        timeout_s: How long to wait for the server to answer.

    Returns:
        The running server; call ``.stop()`` to end it.

    Raises:
        RAModelError: If the server does not answer within ``timeout_s``.
    """
    port = port if port else free_port(host)
    pn.config.throttled = True
    factory = app_factory or (lambda: Explorer().view())
    name = "localhost" if host in ("127.0.0.1", "localhost") else host
    origins = [f"localhost:{port}", f"127.0.0.1:{port}", f"{host}:{port}", *allow_origins]
    thread = pn.serve(  # type: ignore[no-untyped-call]  # Panel's serve carries no type hints
        {"/": factory},
        address=host,
        port=port,
        show=show,
        threaded=True,
        websocket_origin=list(dict.fromkeys(origins)),
        title="ra_model what-if explorer",
        verbose=False,
    )
    url = f"http://{'127.0.0.1' if name == 'localhost' else host}:{port}/"
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((connect_host, port), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                thread.stop()
                raise RAModelError(f"the explorer did not start on {host}:{port} within {timeout_s:g} s") from None
            time.sleep(0.05)
    log.info("explorer listening on %s", url)
    return RunningServer(url=url, host=host, port=port, _thread=thread)
