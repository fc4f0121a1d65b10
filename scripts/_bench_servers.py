"""The servers of ``scripts/bench.py``: starting, watching and stopping them, and the two
helper servers themselves, each run as its own process:

    python scripts/_bench_servers.py upstream --port P [--chunks N]
    python scripts/_bench_servers.py relay --port P --upstream http://127.0.0.1:U/v1/chat/completions

``upstream`` serves ``izzi_proxy.testing.fake_openai_app`` (no key). ``relay`` is the lower
bound a gateway could reach on this stack: one shared ClientSession, the request body
forwarded byte for byte, the answer relayed as it comes; no parsing, no auth, no logging.
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
    the OpenAI fake (passthrough for an OpenAI client), ``bench-claude`` by the Anthropic
    fake (translated for an OpenAI client)."""
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
        f'[storage]\ndatabase_url = "sqlite:///{directory}/izzi.sqlite3"\n'
        'limiter_url = { env = "IZZI_REDIS_URL", default = "memory://" }\n\n'
        f"[billing]\nenabled = {str(billing).lower()}\n\n"
        f'[upstreams.fake]\nkind = "openai"\nbase_url = "{upstream_v1}"\n\n'
        f'[upstreams.claude]\nkind = "anthropic"\nbase_url = "{anthropic_root}"\n'
    )
    return path


def start_servers(children: Children, chunks: int, redis_url: str | None, workers: int = 0) -> tuple[dict, str]:
    """Start the upstreams, the relay and the gateway (and, with ``redis_url``, a second gateway
    whose limiter is that Redis, and with ``workers`` a third of that many processes);
    returns {target: Target} and the key."""
    up_port, relay_port, gw_port, ant_port, redis_gw_port, nobill_port, workers_port = free_ports(7)
    me = str(Path(__file__).resolve())
    upstream = children.start("upstream", me, "upstream", f"--port={up_port}", f"--chunks={chunks}")
    anthropic = children.start("anthropic", me, "anthropic", f"--port={ant_port}", f"--chunks={chunks}")
    children.wait_ready("upstream", up_port)
    children.wait_ready("anthropic", ant_port)
    up_chat = f"http://127.0.0.1:{up_port}/v1/chat/completions"
    relay = children.start("bare", me, "relay", f"--port={relay_port}", f"--upstream={up_chat}")
    config = str(write_gateway_config(children.tmp, f"http://127.0.0.1:{up_port}/v1", f"http://127.0.0.1:{ant_port}"))
    made = subprocess.run(
        [PY, "-m", "izzi_proxy", "keys", "create", "--name", "bench", "--config", config],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode != 0 or not made.stdout.strip():
        raise RuntimeError(f"keys create failed ({made.returncode}):\n{made.stderr}")
    funded = subprocess.run(
        [PY, "-m", "izzi_proxy", "credits", "add", "default", "1000000000", "--config", config],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if funded.returncode != 0:
        raise RuntimeError(f"credits add failed ({funded.returncode}):\n{funded.stderr}")
    serve = ["-m", "izzi_proxy", "serve", "--config", config, f"--port={gw_port}"]
    gateway = children.start("gateway", *serve)
    nobill_config = write_gateway_config(children.tmp, f"http://127.0.0.1:{up_port}/v1",
                                         f"http://127.0.0.1:{ant_port}", billing=False)  # fmt: skip
    nobill = children.start("gateway-nobill", "-m", "izzi_proxy", "serve", "--config", str(nobill_config),
                            f"--port={nobill_port}")  # fmt: skip
    children.wait_ready("bare", relay_port)
    children.wait_ready("gateway", gw_port, health="/healthz")
    children.wait_ready("gateway-nobill", nobill_port, health="/healthz")
    redis_gateway = None
    if redis_url:
        serve = ["-m", "izzi_proxy", "serve", "--config", config, f"--port={redis_gw_port}", "--workers=1"]
        redis_gateway = children.start("gateway-redis", *serve, env={"IZZI_REDIS_URL": redis_url})
        children.wait_ready("gateway-redis", redis_gw_port, health="/healthz")
    workers_gateway = None
    if redis_url and workers > 1:
        serve = ["-m", "izzi_proxy", "serve", "--config", config, f"--port={workers_port}", f"--workers={workers}"]
        workers_gateway = children.start("gateway-workers", *serve, env={"IZZI_REDIS_URL": redis_url})
        children.wait_ready("gateway-workers", workers_port, health="/healthz")
        time.sleep(2)  # every worker listening, not only the first
    gateway_chat = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
    targets = {
        "direct": Target(up_chat, upstream.pid, "bench-echo", upstream.pid),
        "bare": Target(f"http://127.0.0.1:{relay_port}/v1/chat/completions", relay.pid, "bench-echo", upstream.pid),
        "gateway": Target(gateway_chat, gateway.pid, "bench-echo", upstream.pid),
        "gateway-nobill": Target(
            f"http://127.0.0.1:{nobill_port}/v1/chat/completions", nobill.pid, "bench-echo", upstream.pid
        ),
        "translated": Target(gateway_chat, gateway.pid, "bench-claude", anthropic.pid),
    }
    if redis_gateway is not None:
        url = f"http://127.0.0.1:{redis_gw_port}/v1/chat/completions"
        targets["gateway-redis"] = Target(url, redis_gateway.pid, "bench-echo", upstream.pid)
    if workers_gateway is not None:
        url = f"http://127.0.0.1:{workers_port}/v1/chat/completions"
        targets["gateway-workers"] = Target(url, workers_gateway.pid, "bench-echo", upstream.pid)
    return targets, made.stdout.strip()


@dataclass(frozen=True)
class Target:
    url: str
    pid: int  # the server under test
    model: str
    upstream_pid: int


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


def relay_app(upstream_url: str) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            app[session_key] = session
            yield

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        post = request.app[session_key].post
        async with post(upstream_url, data=body, headers={"Content-Type": "application/json"}) as up:
            headers = {"Content-Type": up.headers.get("Content-Type", "application/json")}
            if not headers["Content-Type"].startswith("text/event-stream"):
                return web.Response(body=await up.read(), status=up.status, headers=headers)
            resp = web.StreamResponse(status=up.status, headers=headers)
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("upstream", "anthropic", "relay"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--upstream", help="the relay's upstream chat completions URL")
    args = parser.parse_args()
    try:
        from uvloop import new_event_loop
    except ImportError:
        new_event_loop = asyncio.new_event_loop
    app = relay_app(args.upstream) if args.role == "relay" else upstream_app(args.chunks, args.role)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
