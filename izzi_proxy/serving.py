"""Running one gateway process: listen, serve until SIGTERM or SIGINT, then drain and stop.

The stop comes in two steps, so that a client holding a keep-alive connection is not cut
between two of its requests (HTTP/1.1 has no way to tell it "not this connection" once it
has sent one on it):

1. *Drain* (``DRAIN_S``): the listening socket closes — with several workers on one port,
   new connections go to the others —, and every answer says ``Connection: close``, so a
   busy connection ends cleanly after its answer and the client opens its next one
   elsewhere. The drain ends early when no connection is left.
2. aiohttp's graceful shutdown: connections still idle are closed, streams get
   ``shutdown_timeout_s`` to finish (then are cut with an error event), bodies still
   arriving get 503, every hold is settled.

A single process has nothing to reload with: SIGHUP is logged and ignored (the supervisor of
``--workers`` reloads; see :mod:`izzi_proxy.workers`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from izzi_proxy.keys import CONFIG, LOAD

log = logging.getLogger("izzi")

SHUTDOWN_GRACE_S = 5.0  # what aiohttp waits beyond shutdown_timeout_s: time for cut streams to end
DRAIN_S = 1.0  # at most: long enough for a busy client's next request, short for a deploy


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed, else asyncio's."""
    try:
        from uvloop import new_event_loop
    except ImportError:
        return asyncio.new_event_loop
    return new_event_loop


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool,
    on_listening: Callable[[], None],
) -> None:
    settings = app[CONFIG].server
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_s + SHUTDOWN_GRACE_S,
        keepalive_timeout=settings.keepalive_timeout_s,
        handler_cancellation=True,
    )
    await runner.setup()  # runs on_startup: opens the ledger, the limiter, the upstreams
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        on_listening()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, _cannot_reload)
        await stop.wait()
        await drain(app, runner, site, min(DRAIN_S, settings.shutdown_timeout_s))
    finally:
        await runner.cleanup()


async def drain(app: web.Application, runner: web.AppRunner, site: web.BaseSite, within_s: float = DRAIN_S) -> None:
    """Step 1 above: stop listening, and end each connection after its next answer."""
    load = app[LOAD]
    load.draining = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    await site.stop()
    while runner.server is not None and runner.server.connections and loop.time() - started < within_s:
        await asyncio.sleep(0.05)
    load.drained_s = loop.time() - started


async def close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: while the process drains, each answer ends its connection."""
    if request.app[LOAD].draining:
        response.force_close()


def _cannot_reload() -> None:
    log.warning(
        "SIGHUP: a single process cannot reload (it would refuse connections meanwhile); restart it, or run "
        "with the limits in Redis, where a supervisor runs the workers and reloads them"
    )
