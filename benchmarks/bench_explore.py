"""Twenty people open the what-if explorer at once: time until each page has its first result.

    python benchmarks/bench_explore.py --sessions 20 --rounds 2

The explorer is served on 127.0.0.1 on a free port (nothing else is contacted). Each page load does
what a browser does: an HTTP GET of the page (the server creates the session there: it builds the
widgets and runs the first what-if and baseline scenarios), then the page's websocket, over which
it asks for the session's document (Bokeh's PULL-DOC-REQ, with the session token from the page).
Time to first result = from the GET until the document arrives with both runs in its summary.
The page loads run in a separate client process (asyncio, all started together, each with a
deadline: ``--timeout``), so the client does not compete with the server for Python's GIL, and it
reads the document as JSON instead of building Bokeh models from it, as a browser does in its own
process.

Two modes take turns in each round, each on a freshly started server:

- ``per-session``: every session has its own run cache (as before the shared cache), so every new
  session runs the same year-long treated scenario again.
- ``shared``: the process-wide cache, emptied before the round; sessions that ask for the same
  scenario share one computation.

Before timing, one page load per server (with a throwaway cache) warms Panel, Bokeh and the compiled
model, so neither mode pays the one-off start-up. Finally ``--engine-runs`` runs of the same treated
scenario are timed on one engine one after another and on two engines in two threads: libroadrunner
keeps Python's GIL during a run, so two threads give no speed-up, which is why the explorer keeps one
engine with a lock rather than a pool of engines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

MAX_SESSIONS = 50
REGIMEN = "20 mg bid for 180 d"
TOKEN_IN_PAGE = re.compile(r'"token":"([^"]+)"')


# --------------------------------------------------------------------------- client (its own process)
def _models(node: Any) -> Iterator[dict[str, Any]]:
    """Every serialised Bokeh model (a dict with ``attributes``) in a JSON document."""
    if isinstance(node, dict):
        if isinstance(node.get("attributes"), dict):
            yield node
        for value in node.values():
            yield from _models(value)
    elif isinstance(node, list):
        for value in node:
            yield from _models(value)


def summary_text(content: dict[str, Any]) -> str:
    """Return the text of the page's summary pane in a PULL-DOC-REPLY's content ("" when absent)."""
    for model in _models(content):
        classes = model["attributes"].get("css_classes") or []
        if "ra-summary" in classes:
            return str(model["attributes"].get("text", ""))
    return ""


async def _frame(ws: Any) -> str | bytes:
    message = await ws.read_message()
    if message is None:
        raise RuntimeError("the server closed the websocket")
    return message  # type: ignore[no-any-return]


async def _read_message(ws: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read one Bokeh protocol message: (header, content); its binary buffers are read and dropped."""
    header = json.loads(await _frame(ws))
    await _frame(ws)  # metadata
    content = json.loads(await _frame(ws))
    for _ in range(2 * int(header.get("num_buffers", 0))):
        await _frame(ws)
    return header, content


async def _load(url: str, timeout_s: float) -> dict[str, Any]:
    from bokeh.protocol import Protocol
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        page = await AsyncHTTPClient().fetch(url, request_timeout=timeout_s, connect_timeout=timeout_s)
        out["get_s"] = time.perf_counter() - t0
        found = TOKEN_IN_PAGE.search(page.body.decode("utf-8"))
        if found is None:
            raise RuntimeError("no session token in the page")
        ws_url = url.replace("http://", "ws://", 1).split("?")[0].rstrip("/") + "/ws"
        ws = await websocket_connect(
            HTTPRequest(ws_url, request_timeout=timeout_s, connect_timeout=timeout_s),
            subprotocols=["bokeh", found.group(1)],
            max_message_size=200 * 1024 * 1024,
        )
        try:
            await _read_message(ws)  # ACK
            request = Protocol().create("PULL-DOC-REQ")
            for part in (request.header_json, request.metadata_json, request.content_json):
                await ws.write_message(part)
            while True:
                header, content = await _read_message(ws)
                if header.get("msgtype") == "PULL-DOC-REPLY":
                    break
            text = summary_text(content)
            if "What-if" not in text or "Baseline" not in text:
                raise RuntimeError(f"the page came without a result: {text[:80]!r}")
            out["result_s"] = time.perf_counter() - t0
        finally:
            ws.close()
    except Exception as exc:  # reported with the numbers, not raised: the other loads go on
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def _load_all(url: str, sessions: int, timeout_s: float) -> list[dict[str, Any]]:
    from tornado.httpclient import AsyncHTTPClient

    AsyncHTTPClient.configure(None, max_clients=sessions)
    tasks = [asyncio.create_task(_load(url, timeout_s)) for _ in range(sessions)]
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    return [t.result() if t in done else {"error": f"no result within {timeout_s:g} s"} for t in tasks]


def client(url: str, sessions: int, timeout_s: float) -> None:
    """Load the page ``sessions`` times at once and print the timings as JSON (the client process)."""
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"the benchmark only talks to 127.0.0.1, not {url}")
    print(json.dumps(asyncio.run(_load_all(url, sessions, timeout_s))))


# --------------------------------------------------------------------------- server (this process)
def _throwaway_cache_page() -> object:
    from ra_model.app.explorer import Explorer
    from ra_model.app.state import CACHE_SIZE, RunCache

    return Explorer(cache=RunCache(CACHE_SIZE)).view()


def _shared_cache_page() -> object:
    from ra_model.app.explorer import Explorer

    return Explorer().view()


#: Builds the page of a new session (the server's app factory calls it): the warm-up page first,
#: then the page of the mode being timed.
_PAGE: list[Callable[[], object]] = [_throwaway_cache_page]


def run_mode(name: str, page: Callable[[], object], sessions: int, timeout_s: float) -> dict[str, float]:
    """Serve the explorer, warm it with one page load, then time ``sessions`` simultaneous page loads."""
    from ra_model.app.server import serve
    from ra_model.app.state import SHARED_RUNS

    _PAGE[0] = _throwaway_cache_page
    SHARED_RUNS.clear()
    built = [0]

    def build() -> object:
        built[0] += 1
        return _PAGE[0]()

    server = serve(host="127.0.0.1", app_factory=build)  # type: ignore[arg-type]
    try:
        if not server.url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the server is not on 127.0.0.1: {server.url}")
        with urllib.request.urlopen(server.url, timeout=timeout_s) as response:  # warm-up, not timed
            response.read()
        _PAGE[0] = page
        built[0] = 0
        t0 = time.perf_counter()
        command = [sys.executable, __file__, "--client", server.url, "--sessions", str(sessions)]
        done = subprocess.run(
            [*command, "--timeout", str(timeout_s)],
            capture_output=True,
            text=True,
            timeout=timeout_s + 60,
            check=False,
        )
        wall = time.perf_counter() - t0
    finally:
        server.stop()
    if done.returncode != 0:
        raise SystemExit(f"the client failed:\n{done.stderr}")
    loads = json.loads(done.stdout)
    results = [load["result_s"] for load in loads if "result_s" in load]
    gets = [load["get_s"] for load in loads if "get_s" in load]
    errors = sorted({load["error"] for load in loads if "error" in load})
    line = f"{name:12s} {len(results):3d}/{sessions} loads"
    numbers = {"median_s": float("nan"), "worst_s": float("nan")}
    if results:
        numbers = {"median_s": statistics.median(results), "worst_s": max(results)}
        line += (
            f"  first result: median {numbers['median_s']:5.2f} s, worst {numbers['worst_s']:5.2f} s"
            f"  (page GET: median {statistics.median(gets):5.2f} s, worst {max(gets):5.2f} s);"
            f"  client process {wall:5.2f} s; {built[0]} sessions built"
        )
    print(line, flush=True)
    for error in errors[:3]:
        print(f"{'':12s} failed: {error}", flush=True)
    if name == "shared":
        stats = SHARED_RUNS.stats
        print(
            f"{'':12s} shared cache: {stats.computed} runs computed, {stats.hits} hits, "
            f"{stats.waited} waited for another session's run",
            flush=True,
        )
    return numbers


def engine_threads(runs: int) -> None:
    """Time ``runs`` treated runs on one engine one after another, and on two engines in two threads."""
    from ra_model.engines.engine import Engine
    from ra_model.engines.simulate import default_engine, simulate
    from ra_model.model.source import default_sbml

    engines = [default_engine(), Engine(default_sbml())]
    for engine in engines:  # compile, pre-equilibrate
        simulate("maturation_arrest", REGIMEN, t_end_d=365.0, engine=engine)

    def work(engine: Engine, n: int) -> None:
        for _ in range(n):
            simulate("maturation_arrest", REGIMEN, t_end_d=365.0, engine=engine)

    t0 = time.perf_counter()
    work(engines[0], runs)
    one = time.perf_counter() - t0
    threads = [threading.Thread(target=work, args=(engine, runs // 2)) for engine in engines]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    two = time.perf_counter() - t0
    print(
        f"engines      {runs} one-year treated runs: one engine {one:5.2f} s; two engines in two threads {two:5.2f} s "
        f"(speed-up {one / two:4.2f}x)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--client``, its client process); return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help=f"simultaneous page loads (1 to {MAX_SESSIONS})")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both modes (1 to 5)")
    parser.add_argument("--timeout", type=float, default=180.0, help="deadline of one mode's page loads, s")
    parser.add_argument("--mode", choices=("both", "per-session", "shared"), default="both")
    parser.add_argument("--engine-runs", type=int, default=8, help="runs for the engine-thread check (0: skip)")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS or not 1 <= args.rounds <= 5 or not 0 <= args.engine_runs <= 40:
        parser.error(f"use 1 to {MAX_SESSIONS} sessions, 1 to 5 rounds and 0 to 40 engine runs")
    if not 1 <= args.timeout <= 600:
        parser.error("use a --timeout of 1 to 600 s")
    if args.client:
        client(args.client, args.sessions, args.timeout)
        return 0

    pages = {"per-session": _throwaway_cache_page, "shared": _shared_cache_page}
    modes = list(pages) if args.mode == "both" else [args.mode]
    print(f"{args.sessions} simultaneous page loads of the explorer on 127.0.0.1, {args.rounds} round(s)", flush=True)
    found: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            found[mode].append(run_mode(mode, pages[mode], args.sessions, args.timeout))
    if args.rounds > 1:
        for mode, rounds in found.items():
            medians = ", ".join(f"{r['median_s']:.2f}" for r in rounds)
            worst = ", ".join(f"{r['worst_s']:.2f}" for r in rounds)
            print(f"{mode:12s} medians by round {medians} s; worst by round {worst} s", flush=True)
    if args.engine_runs:
        engine_threads(args.engine_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
