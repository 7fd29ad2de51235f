"""Serve the what-if explorer: start the Panel server in a background thread, wait for it, stop it.

:func:`serve` checks the address first and binds the port in the server's own thread before it
reports success, so a port already in use, an address that is not valid, or one that is not this
computer's, is a clear :class:`~ra_model.errors.InvalidValueError` and never someone else's server.
When no port is given, a free one is chosen and, should another program take it between the choice
and the bind, another one is chosen.

Listening on loopback only (127.0.0.1, ::1, localhost) needs nothing more. Listening beyond it needs
a token, as Jupyter does: the page's address carries ``?token=...`` (the page passes it on to its
websocket), and the first request with it sets a cookie that lets the same browser back in without
it; requests with neither are refused with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hmac
import ipaddress
import logging
import re
import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import panel as pn
from bokeh.server.auth_provider import AuthProvider
from panel.io.server import get_server
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler
from tornado.websocket import WebSocketHandler

from ra_model.app.explorer import Explorer
from ra_model.errors import InvalidValueError, RAModelError

log = logging.getLogger(__name__)

#: Names that mean this computer only.
LOOPBACK_NAMES = ("localhost",)
#: How often a free port is chosen again when another program takes it before the server binds it.
PORT_ATTEMPTS = 5
#: Characters a token may hold: those that need no quoting in a URL.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")
#: The query parameter that carries the token.
TOKEN_PARAMETER = "token"
#: How long a session built for a page request waits for the page's websocket before it is dropped,
#: ms. Bokeh's 15 s is too short when many pages open at once on a busy computer: the server builds
#: the pages one after another, so a late websocket found its session dropped and had it built again.
UNUSED_SESSION_LIFETIME_MS = 120_000
_HOST_FIX = (
    "use --host 127.0.0.1 (this computer only, the default), --host 0.0.0.0 (every network interface) "
    "or one of this computer's own addresses (`ip address` lists them)"
)


def is_loopback(host: str) -> bool:
    """Return whether ``host`` (a checked host, see :func:`check_host`) reaches this computer only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> str:
    """Check that ``host`` can be an address to listen on, without any network traffic for addresses.

    An IP address (IPv4 or IPv6) or ``localhost`` is taken as it is; another name is looked up.
    Whether the address belongs to this computer is found when the server binds it (:func:`serve`).

    Args:
        host: Address or host name.

    Returns:
        ``host``.

    Raises:
        InvalidValueError: If ``host`` is empty, looks like an address but is not a valid one (e.g.
            ``999.1.1.1``), or is a name that cannot be looked up; the message says what to use.
    """
    if host in LOOPBACK_NAMES:
        return host
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not host or re.fullmatch(r"[0-9.]+", host) or ":" in host:
        raise InvalidValueError(f"--host {host!r} is not a valid IP address; {_HOST_FIX}")
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidValueError(f"--host {host!r} is not a known host name ({exc}); {_HOST_FIX}") from None
    return host


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now (another program may take it later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _url_host(host: str) -> str:
    """Return how a browser on this computer writes ``host`` in a URL."""
    if host in ("0.0.0.0", "", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _TokenAuth(AuthProvider):
    """Let a request in when it carries the token, as ``?token=`` or in the cookie that sets.

    Tokens are compared in constant time (``hmac.compare_digest``); the cookie is HttpOnly and
    SameSite=Strict, and is kept out of the session token Bokeh writes into the page.

    Bokeh calls :meth:`get_user` for the page, its websocket and its other endpoints; a request
    without the token has no user, and :meth:`get_login_url` then refuses it with 403 (there is no
    login page to send it to).
    """

    def __init__(self, token: str, cookie: str) -> None:
        """Keep the token and the cookie name (one per port: cookies do not tell ports apart)."""
        self._token = token
        self._cookie = cookie
        super().__init__()

    @property
    def get_user(self) -> Callable[[RequestHandler], str | None]:  # type: ignore[override]  # Bokeh passes the handler
        """The function that names the user of a request, or None without the token."""
        return self._user

    @property
    def get_login_url(self) -> Callable[[RequestHandler], str]:  # type: ignore[override]  # as get_user
        """The function Bokeh asks where to send a request without a user: it refuses it instead."""
        return self._refuse

    def _user(self, handler: RequestHandler) -> str | None:
        given = handler.get_argument(TOKEN_PARAMETER, None)
        if given is not None and hmac.compare_digest(given.encode(), self._token.encode()):
            if not isinstance(handler, WebSocketHandler):
                handler.set_cookie(self._cookie, self._token, httponly=True, samesite="Strict")
            return "token holder"
        kept = handler.get_cookie(self._cookie)
        if kept is not None and hmac.compare_digest(kept.encode(), self._token.encode()):
            return "token holder"
        return None

    def _refuse(self, handler: RequestHandler) -> str:
        log.info("explorer: refused %s %s without the token", handler.request.method, handler.request.path)
        raise HTTPError(
            403, reason="Forbidden: open the explorer with the address ra-model explore printed (it ends in ?token=)"
        )


class _ServerThread(threading.Thread):
    """Build and run a Panel server on its own IOLoop in this thread; report a failure to start."""

    def __init__(self, build: Callable[[IOLoop], Any]) -> None:
        super().__init__(name="ra-model-explorer", daemon=True)
        self._build = build
        self.loop: IOLoop | None = None
        self.server: Any = None
        self.error: BaseException | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        """Bind and start the server, say so (or why not), then serve until :meth:`stop`."""
        loop = IOLoop(make_current=False)
        try:
            self.server = self._build(loop)
            self.server.start()
        except BaseException as exc:  # reported to serve(), which raises it in the caller's thread
            self.error = exc
            loop.close(all_fds=True)
            self.ready.set()
            return
        self.loop = loop
        self.ready.set()
        try:
            loop.start()
        finally:
            try:
                self.server.stop()
            except Exception:  # already stopped, or half torn down: nothing left to release
                log.debug("explorer: stopping the server", exc_info=True)
            loop.close(all_fds=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel the server's tasks, stop its loop and wait for this thread to end."""
        loop = self.loop
        if loop is not None and self.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                loop.add_callback(self._shutdown)
        self.join(timeout=timeout_s)

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.loop is not None:
            self.loop.stop()


@dataclass
class RunningServer:
    """A running explorer server (in a background thread).

    Attributes:
        url: The page's address (with ``?token=...`` when a token is required).
        host: Address the server listens on.
        port: Its port.
        token: The token requests must carry, or None when none is required.
    """

    url: str
    host: str
    port: int
    token: str | None = None
    _thread: _ServerThread | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the server and wait for its thread to end."""
        if self._thread is not None:
            self._thread.stop()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    show: bool = False,
    allow_origins: Sequence[str] = (),
    app_factory: Callable[[], pn.viewable.Viewable] | None = None,
    timeout_s: float = 30.0,
    token: str | None = None,
    require_token: bool | None = None,
) -> RunningServer:
    """Start the explorer in a background thread and return once it listens.

    Sliders report their value when released (``pn.config.throttled``), so dragging does not queue a
    run for every pixel.

    Args:
        host: Address to listen on; the default listens on this computer only.
        port: TCP port; None picks a free one.
        show: Open the page in the default browser.
        allow_origins: Extra ``host[:port]`` names the browser may use to reach the server (needed
            only when listening beyond 127.0.0.1 and reaching it by another name).
        app_factory: Builds the page of one browser session; defaults to ``Explorer().view()``.
        timeout_s: How long to wait for the server to start.
        token: The token requests must carry (letters, digits, ``-_.~``); None makes a random one
            when a token is required.
        require_token: Whether requests need the token. None (the default) requires it when
            listening beyond loopback or when ``token`` is given; False serves anyone who can reach
            the address.

    Returns:
        The running server; call ``.stop()`` to end it.

    Raises:
        InvalidValueError: If the host is not a valid address or not one of this computer's, the
            port is out of range or in use, or the token has characters a URL would need to quote.
        RAModelError: If the server does not start within ``timeout_s`` or fails for another reason.
    """
    host = check_host(host)
    port = port or None  # 0: any free port
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise InvalidValueError(f"--port {port!r} is not a port number; use 1 to 65535, or leave it out for a free one")
    token = choose_token(host, token, require_token)
    pn.config.throttled = True
    factory = app_factory or (lambda: Explorer().view())
    attempts = 1 if port is not None else PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else _free_port(host)
        thread = _ServerThread(
            functools.partial(
                _build,
                factory=factory,
                host=host,
                port=chosen,
                allow_origins=allow_origins,
                token=token,
            )
        )
        thread.start()
        if not thread.ready.wait(timeout_s):
            thread.stop()
            raise RAModelError(
                f"the explorer did not start on {host}:{chosen} within {timeout_s:g} s; "
                "try again, or try another --port"
            )
        if thread.error is None:
            break
        error = thread.error
        if port is None and isinstance(error, OSError) and error.errno == errno.EADDRINUSE and attempt < attempts:
            log.info("explorer: port %d was taken before the server bound it; choosing another", chosen)
            continue
        raise _start_error(error, host, chosen, chosen_by_us=port is None) from None
    url = f"http://{_url_host(host)}:{chosen}/"
    if token is not None:
        url += f"?{TOKEN_PARAMETER}={token}"
    log.info("explorer listening on %s:%d", host, chosen)
    if show:
        webbrowser.open(url, new=2)
    return RunningServer(url=url, host=host, port=chosen, token=token, _thread=thread)


def choose_token(host: str, token: str | None = None, require_token: bool | None = None) -> str | None:
    """Return the token requests to a server on ``host`` must carry, or None when none is needed.

    Args:
        host: The address the server listens on.
        token: The token to use; None makes a random one (``secrets.token_urlsafe``) when needed.
        require_token: Whether a token is needed; None needs one beyond loopback or when ``token``
            is given.

    Returns:
        The token, or None.

    Raises:
        InvalidValueError: If ``token`` is given with ``require_token=False``, or has characters a URL
            would need to quote.
    """
    if require_token is None:
        require_token = token is not None or not is_loopback(host)
    if not require_token:
        if token is not None:
            raise InvalidValueError("--token and --no-token contradict each other; give one or the other")
        return None
    if token is None:
        return secrets.token_urlsafe(24)
    if not TOKEN_PATTERN.fullmatch(token):
        raise InvalidValueError(
            f"--token {token!r}: use letters, digits and - _ . ~ only (nothing a URL would need to quote), "
            "or leave --token out for a random one"
        )
    return token


def _free_port(host: str) -> int:
    """Return :func:`free_port`, with an unusable host turned into an :class:`InvalidValueError`."""
    try:
        return free_port(host)
    except OSError as exc:
        raise _start_error(exc, host, 0, chosen_by_us=True) from None


def _build(
    loop: IOLoop,
    *,
    factory: Callable[[], pn.viewable.Viewable],
    host: str,
    port: int,
    allow_origins: Sequence[str],
    token: str | None,
) -> Any:
    """Create the Panel server on ``loop``, bound to ``host:port`` (not yet started)."""
    origins = [f"localhost:{port}", f"127.0.0.1:{port}", *([] if ":" in host else [f"{host}:{port}"]), *allow_origins]
    extra: dict[str, Any] = {}
    if token is not None:
        cookie = f"ra_model_token_{port}"
        extra = {
            "auth_provider": _TokenAuth(token, cookie),
            # keep the token out of the session token Bokeh writes into the page
            "exclude_cookies": [cookie],
            "exclude_headers": ["Cookie"],
        }
    return get_server(
        {"/": factory},
        port=port,
        address=host,
        loop=loop,
        start=False,
        show=False,
        websocket_origin=list(dict.fromkeys(origins)),
        title="ra_model what-if explorer",
        verbose=False,
        location=False,  # the page does not follow its URL, and Panel's reading of it fails on IPv6 hosts
        unused_session_lifetime_milliseconds=UNUSED_SESSION_LIFETIME_MS,
        **extra,
    )


def _start_error(error: BaseException, host: str, port: int, *, chosen_by_us: bool) -> RAModelError:
    """Turn the reason a server could not start into an error that names the value and the fix."""
    where = f"{host}:{port}" if port else host
    if isinstance(error, socket.gaierror):
        return InvalidValueError(f"--host {host!r} cannot be listened on ({error}); {_HOST_FIX}")
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE and not chosen_by_us:
        return InvalidValueError(
            f"--port {port}: port {port} is already in use on {host} (another explorer or program is listening "
            "there); choose another --port, or leave --port out to pick a free one"
        )
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return RAModelError(f"no free port stayed free on {host} after {PORT_ATTEMPTS} tries; try again")
    if isinstance(error, OSError) and error.errno == errno.EADDRNOTAVAIL:
        return InvalidValueError(f"--host {host!r} is not an address of this computer ({error.strerror}); {_HOST_FIX}")
    if isinstance(error, OSError) and error.errno == errno.EACCES:
        return InvalidValueError(
            f"--port {port}: not allowed to listen on {where} ({error.strerror}; ports below 1024 need "
            "administrator rights); choose a port from 1024 up, or leave --port out to pick a free one"
        )
    if isinstance(error, RAModelError):
        return error
    return RAModelError(f"the explorer could not start on {where}: {type(error).__name__}: {error}")
