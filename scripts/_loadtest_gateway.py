"""The servers of ``scripts/loadtest.py``: its config, keys and start-up (in the load test's
process), and the gateway with a memory probe, run as its own process:

    LOADTEST_PROBE=/tmp/probe.json python scripts/_loadtest_gateway.py serve --config C --port P --workers=1

The fake upstreams and the bare relay are ``scripts/_bench_servers.py``'s. The gateway here is
``izzi-proxy serve …`` unchanged, plus two signal handlers (they run on the main thread,
between two bytecodes, like any Python signal handler):

- SIGUSR1 writes a snapshot of the process's memory to ``$LOADTEST_PROBE`` (JSON);
- SIGUSR2 first runs ``gc.collect()`` (noting what it found unreachable, by type) and glibc's
  ``malloc_trim(0)``, then writes one.

A snapshot splits the resident memory into what Python's allocator holds (pymalloc's 1 MiB
arenas, mmapped: in live blocks, and free inside arenas it cannot return while one block of
them lives), what glibc's malloc holds (``mallinfo2``: in use, and free but kept in its heaps),
and the objects the collector tracks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

from _bench_servers import ROOT, Children, free_ports

HERE = Path(__file__).resolve().parent

# -- in the load test's process: config, keys, start -------------------------------------


async def make_keys(database_url: str, redis_url: str, count: int, limited: int) -> list[tuple[str, bool]]:
    """``count`` accounts with a key each, over config/plans.toml's plans, funded; the first
    ``limited`` keep their plan's limits, the others get overrides the load never reaches."""
    from izzi_proxy.access import override_value
    from izzi_proxy.ledger import open_ledger

    if redis_url:  # account ids restart at 1 in each fresh ledger: no counter of an earlier run may remain
        import redis.asyncio as redis

        async with redis.from_url(redis_url) as client:
            async for name in client.scan_iter("izzi:*"):
                await client.delete(name)
    plans = list(tomllib.loads((ROOT / "config" / "plans.toml").read_text())["plans"])
    wide = {"rpm": 10**8, "concurrent": 10**5, "daily": 10**9, "credits_per_5h": "1000000"}
    ledger, keys = await open_ledger(database_url), []
    try:
        for i in range(count):
            overrides = {} if i < limited else {k: override_value(k, v) for k, v in wide.items()}
            account = await ledger.create_account(f"lt-{i}", plans[i % len(plans)], overrides)
            await ledger.add_credits(account.id, 10**12)  # a million credits, in micro-credits
            keys.append(((await ledger.create_key(account.id, f"lt-{i}"))[1], i < limited))
    finally:
        await ledger.aclose()
    return keys


def long_ms(args) -> int:
    return round(args.hold * 1000 / (args.chunks + 4))  # a chat stream's frames: its chunks and 4 more


def write_config(tmp: Path, args, up_port: int, ant_port: int, database_url: str) -> Path:
    """izzi.toml, models.toml (three models on the fakes) and config/plans.toml, in ``tmp``."""
    routes = {"lt-gpt": f"fake:lt-slow_{args.chunk_ms}", "lt-claude": f"claude:claude-lt-slow_{args.chunk_ms}",
              "lt-gpt-long": f"fake:lt-slow_{long_ms(args)}"}  # fmt: skip
    (tmp / "models.toml").write_text("".join(
        f'[models."{m}"]\nname = "{m}"\ntier = "maintained"\ninput = 1.0\noutput = 2.0\ncontext = 128000\n'
        f'routes = ["{route}"]\n\n' for m, route in routes.items()))  # fmt: skip
    shutil.copy(ROOT / "config" / "plans.toml", tmp / "plans.toml")
    (path := tmp / "izzi.toml").write_text(
        f'[server]\nlog_level = "warning"\nmax_requests_in_flight = {2 * args.streams + 1000}\n\n'
        f'[storage]\ndatabase_url = "{database_url}"\nlimiter_url = "{args.redis or "memory://"}"\n\n'
        f"[billing]\nenabled = true\n\n"
        f'[upstreams.fake]\nkind = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\nresponses = true\n\n'
        f'[upstreams.claude]\nkind = "anthropic"\nbase_url = "http://127.0.0.1:{ant_port}"\n'
    )
    return path


def start(children: Children, args, database_url: str) -> tuple[dict, dict, list, Path]:
    up, ant, relay, gw = free_ports(4)
    servers = str(HERE / "_bench_servers.py")
    children.start("upstream", servers, "upstream", f"--port={up}", f"--chunks={args.chunks}")
    children.start("anthropic", servers, "anthropic", f"--port={ant}", f"--chunks={args.chunks}")
    bare = children.start("bare", servers, "relay", f"--port={relay}",
                          f"--upstream=http://127.0.0.1:{up}/v1/chat/completions")  # fmt: skip
    config = write_config(children.tmp, args, up, ant, database_url)
    keys = asyncio.run(make_keys(database_url, args.redis, args.keys, args.limited))
    probe_path = children.tmp / "probe.json"
    env = {"LOADTEST_PROBE": str(probe_path), **dict(pair.split("=", 1) for pair in args.gateway_env)}
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    gateway = children.start("gateway", str(HERE / "_loadtest_gateway.py"), "serve", "--config", str(config),
                             f"--port={gw}", "--workers=1", env=env)  # fmt: skip
    for name, port in (("upstream", up), ("anthropic", ant), ("bare", relay)):
        children.wait_ready(name, port)
    children.wait_ready("gateway", gw, health="/healthz")
    urls = {"bare": f"http://127.0.0.1:{relay}", "gateway": f"http://127.0.0.1:{gw}"}
    return urls, {"bare": bare.pid, "gateway": gateway.pid}, keys, probe_path


async def postgres_db(url: str, name: str, create: bool) -> None:
    import asyncpg

    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE DATABASE {name}" if create else f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


# -- in the gateway's process: the probe ---------------------------------------------------


LIBC = ctypes.CDLL("libc.so.6")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]  # fmt: skip


LIBC.mallinfo2.restype = _Mallinfo2


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _pymalloc() -> dict[str, int]:
    """sys._debugmallocstats() (written to the C stderr) read back: arenas and blocks."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")

    def number(label: str) -> int:
        found = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text)
        return int(found.group(1).replace(",", "")) if found else 0

    return {"arenas": number("# arenas allocated current"), "used": number("# bytes in allocated blocks"),
            "free_blocks": number("# bytes in available blocks")}  # fmt: skip


def snapshot(trimmed: bool) -> dict:
    info = LIBC.mallinfo2()
    py = _pymalloc()
    mib = 2**20
    return {
        "time": time.time(),
        "trimmed": trimmed,
        "rss_mb": _status_kb("VmRSS") / 1024,
        "rss_anon_mb": _status_kb("RssAnon") / 1024,
        "threads": _status_kb("Threads"),  # a count, not kB
        "pymalloc_arenas_mb": py["arenas"],  # 1 MiB each
        "pymalloc_used_mb": py["used"] / mib,
        "malloc_used_mb": (info.uordblks + info.hblkhd) / mib,
        "malloc_free_mb": info.fordblks / mib,  # free, still held in malloc's heaps (all arenas)
        "malloc_heap_mb": (info.arena + info.hblkhd) / mib,
        "gc_objects": len(gc.get_objects()),
        "gc_frozen": gc.get_freeze_count(),
    }


def _collect() -> dict[str, int]:
    """gc.collect(), keeping what it found unreachable a moment to count it by type."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    gc.collect()
    return {"unreachable": garbage.total(), **dict(garbage.most_common(12))}


def _on_signal(signum: int, frame: object) -> None:
    trimmed = signum == signal.SIGUSR2
    garbage = None
    if trimmed:
        garbage = _collect()
        LIBC.malloc_trim(0)
    path = os.environ["LOADTEST_PROBE"]
    with contextlib.suppress(OSError), open(path + ".tmp", "w") as fh:
        json.dump({**snapshot(trimmed), "garbage": garbage}, fh)
    os.replace(path + ".tmp", path)


def main() -> int:
    signal.signal(signal.SIGUSR1, _on_signal)
    signal.signal(signal.SIGUSR2, _on_signal)
    from izzi_proxy.cli import main as izzi_main

    return izzi_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
