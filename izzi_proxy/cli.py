"""``izzi-proxy``: serve, check-config, and the admin commands (``admin_cli.py``).

izzi-proxy serve [--config PATH] [--host H] [--port P] [--mock] [--workers N]
izzi-proxy check-config [--config PATH]          resolved config, secrets redacted
izzi-proxy migrate [--config PATH]               create or migrate the ledger's schema (serve does too)
izzi-proxy accounts create|list|show|set …
izzi-proxy keys create|list|revoke …
izzi-proxy configure --url URL --key izzi-…       point this machine's coding tools at a gateway
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import orjson
from aiohttp import web

from izzi_proxy import admin_cli, serving, workers
from izzi_proxy.config import Config, ConfigError, load_config
from izzi_proxy.masking import JsonFormatter, SafeFormatter
from izzi_proxy.payments import cli as payments_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="izzi-proxy", description="Izzi Gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="path to izzi.toml (default: the bundled config/izzi.toml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the gateway"))
    serve.add_argument("--host", help="interface to listen on (overrides [server] host)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides [server] port)")
    serve.add_argument("--mock", action="store_true", help="answer every model from the in-process mock upstream")
    serve.add_argument("--workers", type=int, help="processes on one port (default: one per core when the limits "
                       "are in Redis, else 1; see workers.py)")  # fmt: skip
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by the supervisor
    with_config(sub.add_parser("check-config", help="print the resolved config, secrets redacted"))
    with_config(sub.add_parser("migrate", help="create or migrate the ledger's schema (serve does it at start)"))

    admin_cli.add_commands(sub, with_config)
    payments_cli.add_commands(sub, with_config)
    sub.add_parser("configure", help="point this machine's coding tools at a gateway (configure --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["configure"]:  # a user's command: no gateway config is read
        from izzi_proxy import configure

        return configure.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"izzi-proxy: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(config, args)
    if args.command == "check-config":
        return check_config(config)
    if args.command == "migrate":
        return asyncio.run(migrate(config))
    return asyncio.run(admin_cli.run(config, args))


def serve(config: Config, args: argparse.Namespace) -> int:
    from izzi_proxy.app import create_app

    handler = logging.StreamHandler(sys.stderr)
    if config.server.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=config.server.log_level.upper(), handlers=[handler])
    if args.mock:
        config = config.with_mock_upstreams()
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    if not args.worker:
        try:
            count = workers.count(args.workers, config, port)
        except workers.WorkersError as exc:
            print(f"izzi-proxy: {exc}", file=sys.stderr)
            return 2
        if workers.supervised(args.workers, count, config, port):
            return workers.Supervisor(
                _worker_argv(args), count, config.server.shutdown_timeout_s + serving.SHUTDOWN_GRACE_S + serving.DRAIN_S
            ).run()
    try:
        app = create_app(config)
        app.on_startup.append(_freeze_heap)
        with asyncio.Runner(loop_factory=serving.loop_factory()) as runner:
            runner.run(
                serving.serve(
                    app,
                    host,
                    port,
                    reuse_port=args.worker,
                    on_listening=lambda: _listening(host, port, args.mock),
                )
            )
    except ConfigError as exc:
        print(f"izzi-proxy: config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the listening socket
        if exc.errno == errno.EADDRINUSE:
            print(f"izzi-proxy: cannot listen on {host}:{port}: the port is in use; stop what uses it "
                  "or choose another with --port", file=sys.stderr)  # fmt: skip
        else:
            print(f"izzi-proxy: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _listening(host: str, port: int, mock: bool) -> None:
    logging.getLogger("izzi").info("serving on http://%s:%d%s (pid %d)", host, port,
                                   " (mock upstreams)" if mock else "", os.getpid())  # fmt: skip
    workers.ready()


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """A worker's command line: this one's options, as one worker of a supervisor's."""
    argv = ["serve", "--worker"]
    for name in ("config", "host", "port"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    return argv + (["--mock"] if args.mock else [])


async def _freeze_heap(app: web.Application) -> None:
    """After start-up, everything loaded so far (SDKs, plugins, config) lives as long as the
    process: move it out of the cyclic collector's view. Without this, each full collection
    scans the SDKs' many thousand objects: ~100 ms pauses that set the p99 under load."""
    gc.collect()
    gc.freeze()


async def migrate(config: Config) -> int:
    from izzi_proxy.ledger import open_ledger

    ledger = await open_ledger(config.storage.database_url)  # opening migrates
    try:
        print(f"the ledger at {_shown(config.storage.database_url)} is at schema version {await ledger.migrate()}")
    finally:
        await ledger.aclose()
    return 0


def _shown(url: str) -> str:
    """A storage URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def check_config(config: Config) -> int:
    from izzi_proxy.providers import registry

    data = config.redacted()
    data["installed_provider_kinds"] = sorted(registry.installed())
    missing = sorted({u.kind for u in config.upstreams.values()} - set(data["installed_provider_kinds"]))
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    if missing:
        print(f"izzi-proxy: no provider plugin installed for kind(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    return 0
