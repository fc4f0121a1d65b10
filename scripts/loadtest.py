"""Load test: the gateway under a realistic mix, beside the bare relay, with its memory.

Run from the repo root (about 5 minutes with the defaults; the machine is shared, keep it short):

    .venv/bin/python scripts/loadtest.py --duration 20 --concurrency 64 --streams 2000
        [--keys 50] [--limited 5] [--chunks 20] [--chunk-ms 30] [--hold 15] [--settle 35] [--soak 600]
        [--redis redis://127.0.0.1:6379/14] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--malloc-arena-max 2] [--gateway-env PYTHONMALLOC=malloc] [--seed 1]

Servers, each its own process on a free 127.0.0.1 port: the fake OpenAI and Anthropic
upstreams and the bare relay (``scripts/_bench_servers.py``), each chunk of a stream
``--chunk-ms`` after the one before (the fakes' ``slow_<ms>`` model word); the gateway, run by
``scripts/_loadtest_gateway.py`` (``izzi-proxy serve`` plus a memory probe), on SQLite and the
in-process limiter, or ``--postgres`` (a fresh database, dropped after) and ``--redis`` (a
scratch database: its ``izzi:*`` keys are deleted first). ``--keys`` accounts, a key each, over
config/plans.toml's plans and funded; all but ``--limited`` of them get overrides no load
reaches, so a 429 is an error unless a limited key got it.

Phases: (1) the bare relay and the gateway, OpenAI chat plain and streamed, ``--compare-s``
each: throughput, latency, server CPU per request, RSS. (2) ``--duration`` s of ``MIX`` (every
dialect, plain and streamed, passthrough and translated; weighted, seeded) at ``--concurrency``:
throughput, p50/p90/p99 latency and time to first byte, errors by type. (3) ``--streams``
chat streams of ``--hold`` s opened at ``--open-rate``/s, on the relay, then twice on the
gateway: RSS (process tree) before, all open, at peak, at their end and ``--settle`` s after
(aiohttp closes an idle pooled connection 15 to 30 s after its last use); the probe splits the
gateway's heap at each point. (4) ``--soak`` s of the mix, RSS every ``--sample-s`` s: its slope
(least squares, MB/min). Last, the probe after gc.collect() + malloc_trim(0). Exits 1 on any error
the limits did not cause. Every child process is stopped on exit, Ctrl-C included. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import random
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from _bench_servers import Children
from _loadtest_gateway import long_ms, postgres_db, start
from bench import children_of, cpu_seconds, percentile, print_rows

from izzi_proxy import serving

WORDS = ("the", "gateway", "relays", "each", "streamed", "answer", "chunk", "by", "while", "limits", "run", "beside")
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)


@dataclass(frozen=True)
class Kind:
    name: str
    path: str
    dialect: str  # chat | messages | responses: the client's format
    model: str
    stream: bool
    weight: int


CHAT, MSGS, RESP = "/v1/chat/completions", "/v1/messages", "/v1/responses"
MIX = [
    Kind("chat", CHAT, "chat", "lt-gpt", False, 10), Kind("chat-stream", CHAT, "chat", "lt-gpt", True, 20),
    Kind("messages", MSGS, "messages", "lt-claude", False, 5),
    Kind("messages-stream", MSGS, "messages", "lt-claude", True, 25),
    Kind("responses", RESP, "responses", "lt-gpt", False, 5),
    Kind("responses-stream", RESP, "responses", "lt-gpt", True, 15),
    Kind("translated", CHAT, "chat", "lt-claude", False, 5),
    Kind("translated-stream", CHAT, "chat", "lt-claude", True, 15),
]  # fmt: skip
END = {"chat": b"data: [DONE]", "messages": b"event: message_stop", "responses": b"event: response.completed"}
FAILED = (b"event: error", b'data: {"error"', b"event: response.failed")


@functools.cache
def body_of(kind: Kind, prompt: int) -> bytes:
    text = " ".join(random.Random(prompt).choices(WORDS, k=8 + prompt * 4))  # the echo: as long as the prompt
    if kind.dialect == "responses":
        body: dict = {"model": kind.model, "input": text, "store": False, "max_output_tokens": 512}
    else:
        body = {"model": kind.model, "max_tokens": 512, "messages": [{"role": "user", "content": text}]}
    if kind.stream:
        body |= {"stream": True, **({"stream_options": {"include_usage": True}} if kind.dialect == "chat" else {})}
    return json.dumps(body).encode()


def headers_of(kind: Kind, key: str) -> dict[str, str]:
    if kind.dialect == "messages":
        return {"x-api-key": key, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


@dataclass
class Stats:
    lat: dict = field(default_factory=lambda: defaultdict(list))  # kind -> seconds, of each successful request
    ttfb: dict = field(default_factory=lambda: defaultdict(list))  # kind -> seconds to a stream's first body byte
    errors: Counter = field(default_factory=Counter)  # (label, kind): not caused by the limits
    limited: Counter = field(default_factory=Counter)  # (label, kind): 429s of the deliberately limited keys
    wall: float = 0.0
    cpu_s: float = 0.0  # of the server under test

    @property
    def ok(self) -> int:
        return sum(map(len, self.lat.values()))

    def count(self, counter: Counter, names: list[str]) -> int:
        return sum(c for (_, kind), c in counter.items() if kind in names)


def error_type(data: bytes) -> str:
    try:
        error = json.loads(data).get("error")
    except (ValueError, AttributeError):
        return "(no JSON error)"
    return str(error.get("type") or error.get("code")) if isinstance(error, dict) else "(no error type)"


async def one(session, url, kind, key, limited, stats, prompt, on_first=None) -> None:
    """One request, read to its end, and what became of it."""
    clock = time.perf_counter
    start, label = clock(), None
    try:
        async with session.post(url, data=body_of(kind, prompt), headers=headers_of(kind, key)) as resp:
            if resp.status != 200:
                label = f"{resp.status} {error_type(await resp.read())}"
            elif not kind.stream:
                await resp.read()
            else:
                end, tail, first, done, failed = END[kind.dialect], b"", True, False, False
                async for chunk in resp.content.iter_any():
                    if first:
                        first = False
                        stats.ttfb[kind.name].append(clock() - start)
                        if on_first is not None:
                            on_first()
                    window, tail = tail + chunk, chunk[-64:]
                    done = done or end in window
                    failed = failed or any(f in window for f in FAILED)
                label = "stream error event" if failed else None if done else "incomplete stream (no terminal event)"
    except TimeoutError:
        label = "timeout"
    except aiohttp.ClientError as exc:
        label = f"connection: {type(exc).__name__}"
    if label is None:
        stats.lat[kind.name].append(clock() - start)
    else:
        (stats.limited if limited and label.startswith("429") else stats.errors)[label, kind.name] += 1


async def drive(session, base, kinds, keys, conc, seconds, seed, pid) -> Stats:
    """``conc`` workers, each sending a weighted random request after the other until the deadline."""
    stats, clock = Stats(), time.perf_counter
    deadline, weights = clock() + seconds, [k.weight for k in kinds]

    async def worker(i: int) -> None:
        rng = random.Random(seed * 10007 + i)
        while clock() < deadline:
            kind, (key, limited) = rng.choices(kinds, weights)[0], rng.choice(keys)
            await one(session, base + kind.path, kind, key, limited, stats, rng.randrange(4, 40))

    cpu0, begin = cpu_seconds(pid), clock()
    await asyncio.gather(*(worker(i) for i in range(conc)))
    stats.wall, stats.cpu_s = clock() - begin, cpu_seconds(pid) - cpu0
    return stats


def rss_mb(pid: int) -> float:
    """VmRSS of a process and of the processes it runs, MiB."""
    with open(f"/proc/{pid}/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return kb / 1024 + sum(rss_mb(child) for child in children_of(pid))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def probe(pid: int, path: Path | None, trim: bool = False) -> dict | None:
    """The gateway's heap, from ``_loadtest_gateway.py`` (SIGUSR2: after gc.collect + malloc_trim)."""
    if path is None:
        return None
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2 if trim else signal.SIGUSR1)
    for _ in range(250):
        if path.exists():
            return json.loads(path.read_text())
        await asyncio.sleep(0.02)
    return None


async def open_streams(args, base, kind, keys, pid, probe_path, label, probes) -> tuple[dict, Stats]:
    """``--streams`` long streams opened at ``--open-rate``/s on a session of their own (closed
    when they have ended: no idle client connection counts after), and RSS along the way."""
    stats, clock, n, all_open = Stats(), time.perf_counter, args.streams, asyncio.Event()
    live = peak_live = opened = 0
    await asyncio.sleep(1)
    row = {"target": label, "before": rss_mb(pid), "fds": [fds(pid)]}
    probes.append((f"{label}: before", await probe(pid, probe_path)))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=TIMEOUT)

    async def stream(i: int) -> None:
        nonlocal live
        mine = []

        def first() -> None:
            nonlocal live, peak_live, opened
            mine.append(1)
            live, opened, peak_live = live + 1, opened + 1, max(peak_live, live + 1)
            if opened == n:
                all_open.set()

        try:
            await one(session, base + kind.path, kind, *keys[i % len(keys)], stats, 20 + i % 20, first)
        finally:
            live -= len(mine)

    start, tasks = clock(), []
    for i in range(n):
        tasks.append(asyncio.create_task(stream(i)))
        if i % 20 == 19:
            await asyncio.sleep(max(0.0, start + (i + 1) / args.open_rate - clock()))
    everything = asyncio.ensure_future(asyncio.gather(*tasks))
    await asyncio.wait([everything, asyncio.ensure_future(all_open.wait())], return_when=asyncio.FIRST_COMPLETED)
    row |= {"open s": clock() - start, "all open": rss_mb(pid)}
    row["fds"].append(fds(pid))
    probes.append((f"{label}: all open", await probe(pid, probe_path)))
    peak = row["all open"]
    while not everything.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.wait([everything], timeout=0.5)
    row |= {"peak": peak, "max open": peak_live, "ended": rss_mb(pid)}
    await session.close()
    await asyncio.sleep(args.settle)
    row |= {"settled": rss_mb(pid), "errors": sum(stats.errors.values())}
    row["fds"].append(fds(pid))
    probes.append((f"{label}: +{args.settle:g} s", await probe(pid, probe_path)))
    return row, stats


async def soak(args, session, base, keys, pid) -> tuple[dict, Stats]:
    samples: list[tuple[float, float]] = []

    async def sample() -> None:
        while True:
            samples.append((time.monotonic(), rss_mb(pid)))
            await asyncio.sleep(args.sample_s)

    sampler = asyncio.create_task(sample())
    stats = await drive(session, base, MIX, keys, args.concurrency, args.soak, args.seed + 2, pid)
    sampler.cancel()
    kept = samples[len(samples) // 5 :]  # the first fifth is warm-up
    fit = statistics.linear_regression([t for t, _ in kept], [m for _, m in kept]) if len(kept) > 2 else None
    return {"samples": len(kept), "start": kept[0][1], "end": kept[-1][1], "max": max(m for _, m in kept),
            "slope": fit.slope * 60 if fit else 0.0}, stats  # fmt: skip


async def run(args, urls, pids, keys, probe_path) -> dict:
    unlimited = [k for k in keys if not k[1]]
    bare_kinds = {k.name: replace(k, model=f"lt-slow_{args.chunk_ms}") for k in MIX[:2]}  # the relay has no catalog
    out: dict = {"phases": [], "compare": [], "streams": [], "probes": []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=TIMEOUT) as session:
        for name, kinds in (("gateway", MIX), ("bare", list(bare_kinds.values()))):  # warm-up
            out["phases"].append(("warm-up", name, await drive(session, urls[name], kinds, unlimited, 8, 1.0,
                                                                args.seed, pids[name])))  # fmt: skip
        for kind, name in [(k, t) for k in MIX[:2] for t in ("bare", "gateway")]:
            print(f"  {name:<8} {kind.name:<12} c={args.concurrency}", end="", flush=True, file=sys.stderr)
            used = bare_kinds[kind.name] if name == "bare" else kind
            s = await drive(session, urls[name], [used], unlimited, args.concurrency, args.compare_s, args.seed,
                            pids[name])  # fmt: skip
            print(f" {s.ok / s.wall:8.0f} req/s", file=sys.stderr)
            out["phases"].append(("compare", name, s))
            out["compare"].append((name, kind.name, s, rss_mb(pids[name])))
        print(f"  mixed load, {args.duration:g} s", file=sys.stderr)
        rss0 = rss_mb(pids["gateway"])
        s = await drive(session, urls["gateway"], MIX, keys, args.concurrency, args.duration, args.seed + 1,
                        pids["gateway"])  # fmt: skip
        out["phases"].append(("mixed", "gateway", s))
        out["mixed"] = (s, rss0, rss_mb(pids["gateway"]))
    rounds = [("bare", 1, replace(MIX[1], model=f"lt-slow_{long_ms(args)}"), None)]
    rounds += [("gateway", r, replace(MIX[1], model="lt-gpt-long"), probe_path) for r in (1, 2)]
    for name, number, kind, path in rounds:
        print(f"  {args.streams} open streams: {name} round {number}", file=sys.stderr)
        row, s = await open_streams(args, urls[name], kind, unlimited, pids[name], path, f"{name} {number}",
                                    out["probes"])  # fmt: skip
        out["streams"].append(row)
        out["phases"].append((f"streams {number}", name, s))
    if args.soak:
        print(f"  soak, {args.soak:g} s", file=sys.stderr)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=TIMEOUT) as session:
            out["soak"], s = await soak(args, session, urls["gateway"], keys, pids["gateway"])
        out["phases"].append(("soak", "gateway", s))
        await asyncio.sleep(args.settle)
    when = "end (after the soak): gc.collect + malloc_trim" if args.soak else "gc.collect + malloc_trim"
    out["probes"].append((when, await probe(pids["gateway"], probe_path, trim=True)))
    out["trimmed"] = rss_mb(pids["gateway"])
    return out


def ms(values: list[float], q: float) -> float:
    return percentile(sorted(values), q) * 1000


def report(args, out: dict) -> int:
    print(f"Gateway vs bare relay, OpenAI chat passthrough, concurrency {args.concurrency}, {args.compare_s:g} s each:")
    per_req = {(name, kind): s.cpu_s * 1000 / max(s.ok, 1) for name, kind, s, _ in out["compare"]}
    rps = {(name, kind): s.ok / s.wall for name, kind, s, _ in out["compare"]}
    print_rows(
        [("target", "<"), ("scenario", "<"), ("requests", ""), ("errors", ""), ("RPS", ".0f"), ("p50 ms", ".1f"),
         ("p99 ms", ".1f"), ("server CPU ms/req", ".3f"), ("CPU x bare", ".2f"), ("RPS x bare", ".2f"),
         ("RSS MB", ".1f")],
        [[name, kind, s.ok, sum(s.errors.values()), rps[name, kind], ms(s.lat[kind], 0.5), ms(s.lat[kind], 0.99),
          per_req[name, kind], per_req[name, kind] / max(per_req["bare", kind], 1e-9),
          rps[name, kind] / max(rps["bare", kind], 1e-9), rss] for name, kind, s, rss in out["compare"]],
    )  # fmt: skip
    s, rss0, rss1 = out["mixed"]
    print(f"\nMixed load on the gateway: {args.duration:g} s, concurrency {args.concurrency}, {args.keys} keys "
          f"({args.limited} on their plan's own limits), {args.chunks} chunks {args.chunk_ms} ms apart:")  # fmt: skip
    rows = []
    for kind in [*MIX, None]:
        names = [k.name for k in MIX] if kind is None else [kind.name]
        lat, ttfb = ([v for n in names for v in d[n]] for d in (s.lat, s.ttfb))
        limited, errors = s.count(s.limited, names), s.count(s.errors, names)
        t = [f"{ms(ttfb, q):.1f}" for q in (0.5, 0.9, 0.99)] if ttfb else ["-"] * 3
        rows.append([kind.name if kind else "all", kind.weight if kind else 100, len(lat) + limited + errors,
                     len(lat), limited, errors, len(lat) / s.wall, *(ms(lat, q) for q in (0.5, 0.9, 0.99)),
                     *t])  # fmt: skip
    print_rows([("kind", "<"), ("weight", ""), ("requests", ""), ("ok", ""), ("429 limited", ""), ("errors", ""),
                ("ok/s", ".1f"), ("p50 ms", ".1f"), ("p90 ms", ".1f"), ("p99 ms", ".1f"), ("TTFB p50", ""),
                ("TTFB p90", ""), ("TTFB p99", "")], rows)  # fmt: skip
    print(f"(TTFB: until a stream's first body byte.) Gateway CPU {s.cpu_s * 1000 / max(rows[-1][2], 1):.3f} ms per "
          f"request ({s.cpu_s / s.wall * 100:.0f}% of a core); RSS {rss0:.1f} -> {rss1:.1f} MB")  # fmt: skip
    print("\nErrors by type, every phase (429s of the deliberately limited keys: caused by the limits):")
    rows = [[phase, target, label, kind, count, cause] for phase, target, st in out["phases"]
            for counter, cause in ((st.limited, "the limits"), (st.errors, "NOT the limits"))
            for (label, kind), count in sorted(counter.items())]  # fmt: skip
    cols = [("phase", "<"), ("target", "<"), ("error", "<"), ("kind", "<"), ("count", ""), ("cause", "<")]
    print_rows(cols, rows) if rows else print("none")
    print(f"\nOpen streams: {args.streams} OpenAI chat streams of ~{args.hold:g} s, opened at {args.open_rate:g}/s; "
          f"RSS of the server (MB); ended: all streams over; settled: {args.settle:g} s later, client connections "
          "closed:")  # fmt: skip
    cols = ["before", "all open", "peak", "ended", "settled"]
    print_rows(
        [("target", "<"), ("round", ""), ("max open", ""), ("open s", ".1f"), *((c, ".1f") for c in cols),
         ("extra MB", ".1f"), ("KB/stream", ".1f"), ("residual MB", "+.1f"), ("fds before/open/settled", ""),
         ("errors", "")],
        [[*r["target"].split(), r["max open"], r["open s"], *(r[c] for c in cols), r["peak"] - r["before"],
          (r["peak"] - r["before"]) * 1024 / args.streams, r["settled"] - r["before"], "/".join(map(str, r["fds"])),
          r["errors"]] for r in out["streams"]],
    )  # fmt: skip
    print("\nGateway heap (the probe; MB): pymalloc = CPython's allocator (1 MiB arenas: held / in live blocks), "
          "malloc = glibc's (in use / free but kept):")  # fmt: skip
    keys = ["rss_mb", "rss_anon_mb", "pymalloc_arenas_mb", "pymalloc_used_mb", "malloc_used_mb", "malloc_free_mb",
            "gc_objects", "threads"]  # fmt: skip
    print_rows([("when", "<"), *((k.removesuffix("_mb"), ".1f" if k.endswith("mb") else "") for k in keys)],
               [[when, *(p[k] for k in keys)] for when, p in out["probes"] if p])  # fmt: skip
    if (last := out["probes"][-1][1]) and last.get("garbage"):
        print("unreachable objects gc.collect() found then:", ", ".join(f"{k} {v}" for k, v in last["garbage"].items()))
    gw = [r for r in out["streams"] if r["target"].startswith("gateway")]
    base = gw[0]["before"]
    print(
        f"gateway residual vs round 1's start: after round 1 {gw[0]['settled'] - base:+.1f} MB, after round 2 "
        f"{gw[-1]['settled'] - base:+.1f} MB, at the end after gc.collect + malloc_trim {out['trimmed'] - base:+.1f} MB"
    )
    if k := out.get("soak"):
        print(f"\nSoak: {args.soak:g} s of the mix; RSS every {args.sample_s:g} s, after the first fifth:")
        cols = [("samples", ""), ("start MB", ".1f"), ("end MB", ".1f"), ("max MB", ".1f"), ("slope MB/min", "+.3f")]
        print_rows(cols, [[k["samples"], k["start"], k["end"], k["max"], k["slope"]]])
    unexpected = sum(sum(st.errors.values()) for *_, st in out["phases"])
    extra = max(r["peak"] - r["before"] for r in gw)
    print(
        f"\nTargets: {args.streams} open streams with < 100 MB extra: {extra:.1f} MB "
        f"{'PASS' if extra < 100 else 'MISS'}; errors the limits did not cause: {unexpected} "
        f"{'PASS' if not unexpected else 'MISS'}" + (f"; soak slope {k['slope']:+.3f} MB/min" if k else "")
    )
    return 1 if unexpected else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=20.0, help="seconds of the mixed load")
    add("--concurrency", type=int, default=64, help="requests at once in the mixed load and the comparison")
    add("--compare-s", type=float, default=5.0, help="seconds per target and scenario in the relay comparison")
    add("--keys", type=int, default=50, help="accounts (a key each), over config/plans.toml's plans")
    add("--limited", type=int, default=5, help="of them, keys on their plan's own limits (their 429s are expected)")
    add("--chunks", type=int, default=20, help="content chunks per streamed answer")
    add("--chunk-ms", type=int, default=30, help="the upstreams' delay before each chunk")
    add("--streams", type=int, default=2000, help="streams open at once in the open-streams phase")
    add("--hold", type=float, default=15.0, help="seconds each of those streams lasts")
    add("--open-rate", type=float, default=400.0, help="streams opened per second")
    add("--settle", type=float, default=35.0, help="seconds after the streams ended before the last RSS reading")
    add("--soak", type=float, default=0.0, help="seconds of mixed load with RSS sampled (0: no soak)")
    add("--sample-s", type=float, default=5.0, help="the soak's RSS sampling interval")
    add("--malloc-arena-max", type=int, default=0, metavar="N", help="run the gateway with MALLOC_ARENA_MAX=N")
    add("--gateway-env", action="append", default=[], metavar="K=V", help="run the gateway with this variable set")
    add("--redis", default="", metavar="URL", help="the limits in this Redis (a scratch database), not in process")
    add("--postgres", default="", metavar="URL", help="the ledger in a fresh database on this PostgreSQL server")
    add("--seed", type=int, default=1)
    args = parser.parse_args()
    if min(args.concurrency, args.streams, args.keys - args.limited, args.chunks) < 1 or args.limited < 0:
        parser.error("--concurrency, --streams, --chunks and --keys minus --limited must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    loop_factory = serving.loop_factory()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the cleanup below
    database = f"lt_{secrets.token_hex(4)}" if args.postgres else None
    with tempfile.TemporaryDirectory(prefix="izzi-loadtest-") as tmp:
        children = Children(Path(tmp))
        try:
            if database:
                asyncio.run(postgres_db(args.postgres, database, create=True))
            url = urlsplit(args.postgres)._replace(path=f"/{database}").geturl() if database else None
            urls, pids, keys, probe_path = start(children, args, url or f"sqlite:///{tmp}/izzi.sqlite3")
            print(f"servers up (gateway pid {pids['gateway']}); {args.keys} keys", file=sys.stderr)
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                out = runner.run(run(args, urls, pids, keys, probe_path))
            gateway_log = children.log_tail("gateway")
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            children.stop_all()
            if database:
                asyncio.run(postgres_db(args.postgres, database, create=False))
    info = {
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "loop": loop_factory.__module__.split(".")[0], "aiohttp": aiohttp.__version__,
        "ledger": "postgresql" if database else "sqlite", "limiter": "redis" if args.redis else "memory",
        "malloc_arena_max": args.malloc_arena_max or "-", "gateway_env": ",".join(args.gateway_env) or "-",
        "seed": args.seed,
    }  # fmt: skip
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()) + "\n")
    code = report(args, out)
    if gateway_log:
        print(f"\ngateway log (warnings and above):\n{gateway_log}")
    return code


if __name__ == "__main__":
    sys.exit(main())
