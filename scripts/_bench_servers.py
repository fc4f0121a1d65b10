"""The servers of ``scripts/bench.py``: starting, watching and stopping them, and the two
helper servers themselves, each run as its own process:

    python scripts/_bench_servers.py upstream --port P [--chunks N]
    python scripts/_bench_servers.py relay --port P --upstream http://127.0.0.1:U/v1/chat/completions \
        [--messages-upstream http://127.0.0.1:A/v1/messages]

``upstream`` serves ``izzi_proxy.testing.fake_openai_app`` (no key), ``anthropic`` the fake
Anthropic API. ``relay`` is the lower bound a gateway could reach on this stack: one shared
ClientSession, the request body forwarded byte for byte (chat completions to the first,
messages to the second), the answer relayed as it comes; no parsing, no auth, no logging.
The gateway runs as ``python -m izzi_proxy serve`` on a config written by
``write_gateway_config``. All of them use uvloop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- in the benchmark's process: start, wait for, stop --------------------------------------


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all held open while choosing, so none repeats)."""
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark dies without cleaning up (even SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Children:
    """The server processes; each logs to a file in ``tmp``; ``stop_all`` ends them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.procs = tmp, {}

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.tmp / f"{name}.log", "wb") as log:
            # Own session: a Ctrl-C reaches only the benchmark, which then stops them in order.
            self.procs[name] = subprocess.Popen(
                [PY, *argv], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, env={**os.environ, **(env or {})},
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        return self.procs[name]

    def wait_ready(self, name: str, port: int, health: str | None = None) -> None:
        """Poll until the port accepts connections (and ``health`` answers 200)."""
        proc, deadline = self.procs[name], time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")
            try:
                if health is None:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return
                with NO_PROXY.open(f"http://127.0.0.1:{port}{health}", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.02)  # poll interval
        raise RuntimeError(f"{name} was not ready after 30 s:\n{self.log_tail(name)}")

    def log_tail(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:].strip()

    def stop_all(self) -> None:
        live = [proc for proc in self.procs.values() if proc.poll() is None]
        for proc in live:
            proc.terminate()  # aiohttp's graceful stop; nothing is in flight any more
        for proc in live:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def write_gateway_config(directory: Path, upstream_v1: str, anthropic_root: str, billing: bool = True) -> Path:
    """izzi.toml + models.toml: the two fakes as upstreams (no keys); ``bench-echo`` served by
    the OpenAI fake (passthrough for an OpenAI client, translated for an Anthropic one),
    ``bench-claude`` by the Anthropic fake (the other way round). The ledger is SQLite unless
    ``IZZI_DATABASE_URL`` says otherwise, the limits in process unless ``IZZI_REDIS_URL`` does."""
    (directory / "models.toml").write_text(
        "".join(
            f'[models."{model}"]\nname = "{model}"\ntier = "standard"\n'
            f'input = 1.0\noutput = 2.0\ncontext = 128000\nroutes = ["{route}"]\n\n'
            for model, route in (("bench-echo", "fake:bench-echo"), ("bench-claude", "claude:bench-echo"))
        )
    )
    # one plan whose limits the load never reaches: the limiter runs, and refuses nothing
    (directory / "plans.toml").write_text(
        'default = "bench"\n[plans.bench]\nrpm = 100000000\nconcurrent = 100000\ndaily = 1000000000\n'
        'tiers = ["maintained", "budget", "standard", "premium"]\n'
    )
    path = directory / ("izzi.toml" if billing else "izzi-nobill.toml")
    path.write_text(
        f'[server]\nlog_level = "warning"\n\n'
        f'[storage]\ndatabase_url = {{ env = "IZZI_DATABASE_URL", default = "sqlite:///{directory}/izzi.sqlite3" }}\n'
        'limiter_url = { env = "IZZI_REDIS_URL", default = "memory://" }\n\n'
        f"[billing]\nenabled = {str(billing).lower()}\n\n"
        f'[upstreams.fake]\nkind = "openai"\nbase_url = "{upstream_v1}"\n\n'
        f'[upstreams.claude]\nkind = "anthropic"\nbase_url = "{anthropic_root}"\n'
    )
    return path


def _gateway_cli(config: str, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run an ``izzi-proxy`` command on the bench's config; its stdout."""
    done = subprocess.run(
        [PY, "-m", "izzi_proxy", *argv, "--config", config],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"izzi-proxy {' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def funded_key(config: str, env: dict[str, str] | None = None) -> str:
    """A new key on the default account of the config's ledger (``env`` may point it at
    another database), with credits the load never uses up."""
    key = _gateway_cli(config, "keys", "create", "--name", "bench", env=env)
    if not key:
        raise RuntimeError("keys create printed no key")
    _gateway_cli(config, "credits", "add", "default", "1000000000", env=env)
    return key


def start_servers(
    children: Children, chunks: int, redis_url: str | None, workers: int = 0, postgres_url: str | None = None
) -> dict[str, Target]:
    """Start the upstreams, the relay and the gateways; returns {target: Target}.

    Always: ``gateway`` (embedded defaults: SQLite ledger, limits in process) and
    ``gateway-nobill`` (the same with billing off). With ``redis_url``: ``gateway-redis``
    (limits in that Redis), and with ``workers`` ``gateway-workers`` (that many processes).
    With ``redis_url`` and ``postgres_url`` (a scratch schema in it): ``gateway-pg``, the
    ledger in PostgreSQL and the limits in Redis. Each gateway serves chat completions and
    messages; the targets name the route and the model."""
    up_port, relay_port, gw_port, ant_port, redis_gw_port, nobill_port, workers_port, pg_port = free_ports(8)
    me = str(Path(__file__).resolve())
    upstream = children.start("upstream", me, "upstream", f"--port={up_port}", f"--chunks={chunks}")
    anthropic = children.start("anthropic", me, "anthropic", f"--port={ant_port}", f"--chunks={chunks}")
    children.wait_ready("upstream", up_port)
    children.wait_ready("anthropic", ant_port)
    up_chat, up_messages = f"http://127.0.0.1:{up_port}/v1/chat/completions", f"http://127.0.0.1:{ant_port}/v1/messages"
    relay = children.start(
        "bare", me, "relay", f"--port={relay_port}", f"--upstream={up_chat}", f"--messages-upstream={up_messages}"
    )
    up_v1, ant_root = f"http://127.0.0.1:{up_port}/v1", f"http://127.0.0.1:{ant_port}"
    config = str(write_gateway_config(children.tmp, up_v1, ant_root))
    key = funded_key(config)
    serve = ["-m", "izzi_proxy", "serve", "--config", config]
    gateway = children.start("gateway", *serve, f"--port={gw_port}")
    nobill_config = str(write_gateway_config(children.tmp, up_v1, ant_root, billing=False))
    nobill = children.start("gateway-nobill", "-m", "izzi_proxy", "serve", "--config", nobill_config,
                            f"--port={nobill_port}")  # fmt: skip
    children.wait_ready("bare", relay_port)
    children.wait_ready("gateway", gw_port, health="/healthz")
    children.wait_ready("gateway-nobill", nobill_port, health="/healthz")
    # (target, port, process, key, route, model, upstream process)
    found = [("direct", up_port, upstream, key, "chat", "bench-echo", upstream),
             ("bare", relay_port, relay, key, "chat", "bench-echo", upstream),
             ("bare-messages", relay_port, relay, key, "messages", "bench-claude", anthropic),
             ("gateway", gw_port, gateway, key, "chat", "bench-echo", upstream),
             ("gateway-nobill", nobill_port, nobill, key, "chat", "bench-echo", upstream),
             ("translated", gw_port, gateway, key, "chat", "bench-claude", anthropic),
             ("messages", gw_port, gateway, key, "messages", "bench-claude", anthropic),
             ("messages-translated", gw_port, gateway, key, "messages", "bench-echo", upstream)]  # fmt: skip
    if redis_url:
        env = {"IZZI_REDIS_URL": redis_url}
        started = children.start("gateway-redis", *serve, f"--port={redis_gw_port}", "--workers=1", env=env)
        children.wait_ready("gateway-redis", redis_gw_port, health="/healthz")
        found.append(("gateway-redis", redis_gw_port, started, key, "chat", "bench-echo", upstream))
        if workers > 1:
            started = children.start("gateway-workers", *serve, f"--port={workers_port}", f"--workers={workers}",
                                     env=env)  # fmt: skip
            children.wait_ready("gateway-workers", workers_port, health="/healthz")
            time.sleep(2)  # every worker listening, not only the first
            found.append(("gateway-workers", workers_port, started, key, "chat", "bench-echo", upstream))
        if postgres_url:
            env = {**env, "IZZI_DATABASE_URL": postgres_url}
            pg_key = funded_key(config, env)
            started = children.start("gateway-pg", *serve, f"--port={pg_port}", "--workers=1", env=env)
            children.wait_ready("gateway-pg", pg_port, health="/healthz")
            found += [("gateway-pg", pg_port, started, pg_key, "chat", "bench-echo", upstream),
                      ("messages-pg", pg_port, started, pg_key, "messages", "bench-claude", anthropic)]  # fmt: skip
    return {
        name: Target(f"http://127.0.0.1:{port}{ROUTES[route]}", proc.pid, model, up.pid, key, route)
        for name, port, proc, key, route, model, up in found
    }


ROUTES = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}


@dataclass(frozen=True)
class Target:
    url: str
    pid: int  # the server under test
    model: str
    upstream_pid: int
    key: str
    route: str = "chat"  # "chat" (an OpenAI client) or "messages" (an Anthropic client)


# -- in the child processes: the fake upstream and the bare relay ----------------------------


class _Discard(list):
    """The fake upstream records every request for tests; a benchmark keeps none."""

    def append(self, item: object) -> None:
        pass


def upstream_app(chunks: int, fake: str) -> web.Application:
    from izzi_proxy.testing import RECEIVED, fake_anthropic_app, fake_openai_app

    make = fake_anthropic_app if fake == "anthropic" else fake_openai_app
    app = make(api_key=None, chunks=chunks)
    app[RECEIVED] = _Discard()
    return app


def relay_app(upstream_url: str, messages_url: str | None = None) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            app[session_key] = session
            yield

    def relay(url: str, forward: tuple[str, ...] = ()):
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {"Content-Type": "application/json"}
            for name in forward:  # none for chat: the same work as before messages were added
                headers[name] = request.headers.get(name, "")
            async with request.app[session_key].post(url, data=body, headers=headers) as up:
                headers = {"Content-Type": up.headers.get("Content-Type", "application/json")}
                if not headers["Content-Type"].startswith("text/event-stream"):
                    return web.Response(body=await up.read(), status=up.status, headers=headers)
                resp = web.StreamResponse(status=up.status, headers=headers)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        return handle

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", relay(upstream_url))
    if messages_url:  # the fake Anthropic API wants its version header
        app.router.add_post("/v1/messages", relay(messages_url, ("anthropic-version",)))
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("upstream", "anthropic", "relay"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--upstream", help="the relay's upstream chat completions URL")
    parser.add_argument("--messages-upstream", help="the relay's upstream messages URL")
    args = parser.parse_args()
    try:
        from uvloop import new_event_loop
    except ImportError:
        new_event_loop = asyncio.new_event_loop
    app = (
        relay_app(args.upstream, args.messages_upstream)
        if args.role == "relay"
        else upstream_app(args.chunks, args.role)
    )
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
