"""Benchmark: what the Izzi Gateway costs on top of a bare aiohttp relay.

Run from the repo root (about 5 minutes with the defaults):

    .venv/bin/python scripts/bench.py [--seconds 5] [--chunks 20] [--concurrency 1,64]
                                      [--scenarios plain,stream] [--no-direct] [--json out.json]
                                      [--redis URL] [--postgres URL] [--workers N] [--targets a,b]

One run starts its servers (``scripts/_bench_servers.py``), each its own process on a free
127.0.0.1 port, with uvloop when installed: the fake OpenAI and Anthropic upstreams
(``izzi_proxy.testing``), a bare relay (one ClientSession, bytes in, bytes out: the lower
bound; chat completions to the OpenAI fake, messages to the Anthropic one) and the
gateways (``python -m izzi_proxy serve`` on a temporary config whose upstreams are the
fakes, with keys made by ``izzi-proxy keys create``): ``gateway`` on the embedded defaults
(SQLite ledger, limits in process), ``gateway-nobill`` the same with billing off,
``gateway-redis`` with its limits in ``--redis``, ``gateway-pg`` with its limits in Redis
and its ledger in ``--postgres`` (a scratch schema, dropped after).

For each scenario (plain / stream) x concurrency, the same load goes to each target:
N worker coroutines in this process, one ClientSession, POSTs in a loop for ``--seconds``
after a warm-up: an OpenAI client's chat completions, or an Anthropic client's messages
(the ``messages*`` targets), passthrough or translated (to the other upstream). Per target
it reports requests, RPS, p50/p99 latency (until the last byte of the answer), and the CPU
time per request of the server under test and of the upstream (utime + stime from
/proc/<pid>/stat, all threads). Each gateway is compared with the bare relay of its
client's format measured in the same run, since absolute figures on a shared machine mean
little: CPU per request (target <= 1.5x passthrough, <= 2x translated) and the p50 latency
it adds at concurrency 1 (target < 1 ms). Linux only (/proc). Billing on / off
(``gateway`` / ``gateway-nobill``) is the cost of holds and settlement (target <= 1.2x
CPU per request). The ledger alone is then timed in this process, on SQLite and on
PostgreSQL (``--postgres``): a hold and its settlement per request, sequential and 64 at once.
Every child process is stopped and the temp dir removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from _bench_servers import Children, start_servers

from izzi_proxy import serving

TICK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 1.0
CPU_TARGET, TRANSLATED_TARGET, LATENCY_TARGET_MS = 1.5, 2.0, 1.0
BILLING_TARGET = 1.2  # billing on / off, CPU per request
PROMPT = [{"role": "user", "content": "Say hello to the benchmark"}]
MESSAGES_HEADERS = {"anthropic-version": "2023-06-01"}  # what the Anthropic SDK sends
# Each gateway target against the bare relay of its client's format, and its CPU target.
PIPELINES = (
    ("gateway", "bare", CPU_TARGET), ("gateway-pg", "bare", CPU_TARGET),
    ("messages", "bare-messages", CPU_TARGET), ("messages-pg", "bare-messages", CPU_TARGET),
    ("translated", "bare", TRANSLATED_TARGET), ("messages-translated", "bare-messages", TRANSLATED_TARGET),
)  # fmt: skip


# -- load ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and of the processes it runs (a
    supervisor's workers), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK + sum(cpu_seconds(child) for child in children_of(pid))


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclass
class Result:
    target: str
    scenario: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_req: float
    upstream_cpu_ms_per_req: float
    client_cpu_ms_per_req: float


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


async def drive(session, url, headers, body, conc, seconds) -> tuple[list[float], int, float]:
    """``conc`` workers post in a loop until the deadline, each answer read to its last byte.
    Returns the latencies (s) of the successful requests, the error count and the wall time."""
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter
    deadline = clock() + seconds

    async def worker() -> None:
        nonlocal errors
        record = latencies.append
        while (start := clock()) < deadline:
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                record(clock() - start)
            else:
                errors += 1

    begin = clock()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return latencies, errors, clock() - begin


def request_of(target, scenario: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers an OpenAI or an Anthropic client sends to the target."""
    body: dict = {"model": target.model, "messages": PROMPT, "stream": scenario == "stream"}
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
    if target.route == "messages":
        body["max_tokens"] = 256
        headers.update(MESSAGES_HEADERS)
    return json.dumps(body).encode(), headers


async def measure(session, name, target, scenario, conc, seconds) -> Result:
    """Warm up, then one measured window; CPU of the server under test and its upstream."""
    url, pids = target.url, (target.pid, target.upstream_pid)
    body, headers = request_of(target, scenario)
    await drive(session, url, headers, body, conc, min(WARMUP_S, seconds))
    cpu0 = (*map(cpu_seconds, pids), time.process_time())
    latencies, errors, wall = await drive(session, url, headers, body, conc, seconds)
    cpu1 = (*map(cpu_seconds, pids), time.process_time())
    n = len(latencies)
    per_req = [(b - a) * 1000 / max(n, 1) for a, b in zip(cpu0, cpu1, strict=True)]
    latencies.sort()
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    return Result(name, scenario, conc, n, errors, round(wall, 3), n / wall, p50, p99, *per_req)


async def run(args: argparse.Namespace, targets: dict) -> list[Result]:
    # each bare relay right before the gateways of its format, in each scenario: they see
    # the same machine state
    order = ["direct", "bare", "gateway-nobill", "gateway", "gateway-redis", "gateway-workers", "gateway-pg",
             "translated", "bare-messages", "messages", "messages-pg", "messages-translated"]  # fmt: skip
    names = [name for name in order if name in targets and not (name == "direct" and args.no_direct)]
    if args.targets:
        names = [name for name in names if name in args.targets]
    results = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # bare right before gateway, in each scenario: both see the same machine state
        for scenario, conc, name in itertools.product(args.scenarios, args.concurrency, names):
            print(f"  {name:<10} {scenario:<7} c={conc:<3}", end="", flush=True, file=sys.stderr)
            r = await measure(session, name, targets[name], scenario, conc, args.seconds)
            print(f" {r.rps:8.0f} req/s", file=sys.stderr)
            if not r.requests:
                raise RuntimeError(f"{name} answered no request successfully ({r.errors} errors)")
            results.append(r)
    return results


async def limiter_costs(redis_url: str | None) -> list[dict]:
    """What one request costs the limiter: ``admit`` (the check-and-consume; one Redis round
    trip, one Lua script) plus ``release`` (a second, after the answer)."""
    from izzi_proxy.limiter import Limits, open_limiter

    limits = Limits(rpm=10**9, concurrent=10**6, daily=10**12)
    rows = []
    for backend, url, calls in (("in-process", "memory://", 20000), ("redis", redis_url, 3000)):
        if url is None:
            continue
        limiter = await open_limiter(url)
        try:
            start = time.perf_counter()
            for i in range(calls):
                decision = await limiter.admit("bench", limits, f"l{i}", time.time(), 60.0, "127.0.0.1")
                await limiter.release("bench", decision.lease)
            elapsed = time.perf_counter() - start
        finally:
            await limiter.aclose()
        rows.append({"backend": backend, "calls": calls, "us_per_request": elapsed / calls * 1e6,
                     "round_trips": 2 if backend == "redis" else 0})  # fmt: skip
    return rows


async def ledger_costs(postgres_url: str | None) -> list[dict]:
    """What one request costs the ledger: ``place_hold`` before the upstream call (the one
    round trip on the request's path) and ``settle`` after the answer (charge, release and
    the usage record in one transaction). Sequential on one account, then 64 at once over
    64 accounts (row locks: nothing serialises requests of different accounts on PostgreSQL;
    SQLite has one writer by design)."""
    import secrets

    from izzi_proxy.ledger import HoldAsk, SpendLimits, UsageRecord, open_ledger

    rows = []
    backends = [("sqlite", None)] + ([("postgresql", postgres_url)] if postgres_url else [])
    for backend, url in backends:
        schema = None
        if backend == "sqlite":
            tmp = tempfile.mkdtemp(prefix="izzi-bench-ledger-")
            url = f"sqlite:///{tmp}/ledger.sqlite3"
        else:
            import asyncpg

            schema = "bench_" + secrets.token_hex(4)
            admin = await asyncpg.connect(url)
            await admin.execute(f"CREATE SCHEMA {schema}")
            url = f"{url}{'&' if '?' in url else '?'}search_path={schema}"
        ledger = await open_ledger(url)
        try:
            accounts = [await ledger.create_account(f"a{i}", "bench") for i in range(64)]
            for account in accounts:
                await ledger.add_credits(account.id, 10**15)
            limits = SpendLimits(window=10**15, month=10**15)

            async def one(account_id: int, i: int, ledger=ledger, limits=limits) -> None:
                now = time.time()
                ask = HoldAsk(account_id, f"r{i}", 5000, 100, "bench", now + 60, {"model": "m"})
                held = await ledger.place_hold(ask, limits, now)
                record = UsageRecord(request_id=f"r{i}", endpoint="/v1/chat/completions", started_at=now,
                                     account_id=account_id, model="m", status=200)  # fmt: skip
                await ledger.settle(held.hold_id, 1234, record, time.time())

            for label, calls, parallel in (("sequential", 2000, 1), ("64 at once", 4000, 64)):
                start = time.perf_counter()
                for batch in range(calls // parallel):
                    await asyncio.gather(*(one(accounts[j].id, batch * parallel + j) for j in range(parallel)))
                elapsed = time.perf_counter() - start
                rows.append({"backend": backend, "mode": label, "calls": calls,
                             "us_per_request": elapsed / calls * 1e6, "requests_per_s": calls / elapsed,
                             "round_trips_before_upstream": 1, "round_trips_after": 1})  # fmt: skip
        finally:
            await ledger.aclose()
            if schema is not None:
                await admin.execute(f"DROP SCHEMA {schema} CASCADE")
                await admin.close()
    return rows


# -- report -------------------------------------------------------------------------------


def print_rows(columns: list[tuple[str, str]], rows: list[list]) -> None:
    """A text table; ``columns`` = (title, format spec); a spec starting with '<' aligns left."""
    specs = [f for _, f in columns]
    table = [[t for t, _ in columns]] + [list(map(format, row, specs)) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    pads = [str.ljust if f[:1] == "<" else str.rjust for f in specs]
    for n, row in enumerate(table):
        line = "  ".join(pad(c, w) for pad, c, w in zip(pads, row, widths, strict=True))
        print(line.rstrip() + ("\n" + "-" * len(line) if n == 0 else ""))


def compare(
    results: list[Result], target: str = "gateway", base_target: str = "bare", cpu_target: float = CPU_TARGET
) -> list[dict]:
    """``target`` against ``base_target``, per scenario and concurrency."""
    bare = {(r.scenario, r.concurrency): r for r in results if r.target == base_target}
    rows = []
    for gw in (r for r in results if r.target == target):
        base = bare.get((gw.scenario, gw.concurrency))
        if base is None:  # --targets left it out
            continue
        cpu_ratio = gw.server_cpu_ms_per_req / max(base.server_cpu_ms_per_req, 1e-9)
        added = gw.p50_ms - base.p50_ms if gw.concurrency == 1 else None
        rows.append({
            "target": target, "base": base_target, "cpu_target": cpu_target,
            "scenario": gw.scenario, "concurrency": gw.concurrency,
            "cpu_ratio": cpu_ratio, "cpu_pass": cpu_ratio <= cpu_target,
            "rps_ratio": gw.rps / base.rps,
            "added_p50_ms": added,
            "latency_pass": None if added is None else added < LATENCY_TARGET_MS,
        })  # fmt: skip
    return rows


def report(results: list[Result], rows: list[dict], translated: list[dict]) -> None:
    print_rows(
        [("target", "<"), ("scenario", "<"), ("conc", ""), ("requests", ""), ("errors", ""),
         ("RPS", ".0f"), ("p50 ms", ".2f"), ("p99 ms", ".2f"), ("server CPU ms/req", ".3f"),
         ("upstream CPU ms/req", ".3f"), ("client CPU ms/req", ".3f")],
        [[r.target, r.scenario, r.concurrency, r.requests, r.errors, r.rps, r.p50_ms, r.p99_ms,
          r.server_cpu_ms_per_req, r.upstream_cpu_ms_per_req, r.client_cpu_ms_per_req]
         for r in results],
    )  # fmt: skip
    print("\nEach gateway vs the bare relay of its client's format (same run):")
    verdict = {True: "PASS", False: "MISS", None: "-"}
    print_rows(
        [("target", "<"), ("vs", "<"), ("scenario", "<"), ("conc", ""), ("CPU/req ratio", ".2f"),
         ("target", "<"), ("RPS ratio", ".2f"), ("added p50 ms", ""), ("CPU/req", "<"),
         (f"added p50 < {LATENCY_TARGET_MS:g} ms", "<")],
        [[c["target"], c["base"], c["scenario"], c["concurrency"], c["cpu_ratio"], f"<= {c['cpu_target']:g}x",
          c["rps_ratio"], "-" if c["added_p50_ms"] is None else f"{c['added_p50_ms']:+.3f}",
          verdict[c["cpu_pass"]], verdict[c["latency_pass"]]] for c in rows],
    )  # fmt: skip
    print("\nTranslated (OpenAI client -> Anthropic upstream) vs passthrough (OpenAI -> OpenAI), same gateway:")
    print_rows(
        [("scenario", "<"), ("conc", ""), ("CPU/req ratio", ".2f"), ("RPS ratio", ".2f"),
         ("added p50 ms", "")],
        [[c["scenario"], c["concurrency"], c["cpu_ratio"], c["rps_ratio"],
          "-" if c["added_p50_ms"] is None else f"{c['added_p50_ms']:+.3f}"] for c in translated],
    )  # fmt: skip
    print(
        "\nserver CPU = utime+stime of the process under test per completed request (the direct"
        "\nrow's server is the upstream itself); latency = whole request until its last byte."
        "\nThe translated rows' upstream is the fake Anthropic API (it validates every request"
        "\nwith pydantic, so its own CPU is higher); their server CPU is the gateway's."
    )


# -- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--seconds", type=float, default=5.0, help="measured time per target and scenario")
    add("--chunks", type=int, default=20, help="content chunks per streamed answer")
    add("--concurrency", default="1,64", help="comma-separated concurrency levels")
    add("--scenarios", default="plain,stream", help="plain and/or stream")
    add("--no-direct", action="store_true", help="skip the reference run straight at the upstream")
    add("--json", metavar="PATH", help="also write every figure as JSON")
    add("--targets", help="only these targets (comma-separated; the comparisons need their bare relay)")
    add(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="also a gateway of N worker processes (limits in --redis), compared with the one-process gateway-redis",
    )
    add(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        metavar="URL",
        help="a PostgreSQL for gateway-pg's ledger and the ledger costs (scratch schemas, dropped after; '' to skip)",
    )
    add(
        "--redis",
        default="redis://127.0.0.1:6379/14",
        metavar="URL",
        help="a Redis for the gateway-redis target and the limiter costs ('' to skip)",
    )
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.targets = {t.strip() for t in args.targets.split(",") if t.strip()} if args.targets else None
    if not set(args.scenarios) <= {"plain", "stream"} or min(args.concurrency, default=0) < 1:
        parser.error("--scenarios takes plain,stream; --concurrency positive integers")
    return args


@contextlib.contextmanager
def scratch_schema(runner: asyncio.Runner, args: argparse.Namespace) -> Iterator[str | None]:
    """With ``--postgres`` and ``--redis``, a scratch schema for ``gateway-pg``'s ledger (its
    URL), dropped after; else None."""
    if not (args.postgres and args.redis):
        yield None
        return
    schema = "bench_gw_" + os.urandom(4).hex()
    runner.run(_on_postgres(args.postgres, f"CREATE SCHEMA {schema}"))
    try:
        yield f"{args.postgres}{'&' if '?' in args.postgres else '?'}search_path={schema}"
    finally:
        runner.run(_on_postgres(args.postgres, f"DROP SCHEMA {schema} CASCADE"))


async def _on_postgres(url: str, statement: str) -> None:
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        await db.execute(statement)
    finally:
        await db.close()


def main() -> int:
    args = parse_args()
    loop_factory = serving.loop_factory()
    loop_name = loop_factory.__module__.split(".")[0]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the cleanup below
    with tempfile.TemporaryDirectory(prefix="izzi-bench-") as tmp:
        children = Children(Path(tmp))
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner, scratch_schema(runner, args) as pg_url:
                targets = start_servers(children, args.chunks, args.redis or None, args.workers, pg_url)
                print(f"servers up; {args.seconds:g} s per run, {WARMUP_S:g} s warm-up", file=sys.stderr)
                results = runner.run(run(args, targets))
                costs = runner.run(limiter_costs(args.redis or None))
                ledger = runner.run(ledger_costs(args.postgres or None))
            gateway_log = children.log_tail("gateway")
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            children.stop_all()
    info = {
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "loop": loop_name, "aiohttp": aiohttp.__version__, "seconds": args.seconds,
        "warmup_s": WARMUP_S, "chunks": args.chunks,
    }  # fmt: skip
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()) + "\n")
    rows = [row for target, base, cpu in PIPELINES for row in compare(results, target, base, cpu)]
    translated = compare(results, "translated", "gateway")
    report(results, rows, translated)
    billing = compare(results, "gateway", "gateway-nobill")
    print("\nBilling on vs the same gateway with billing off (same run; target CPU/req <= 1.2x):")
    print_rows(
        [("scenario", "<"), ("conc", ""), ("CPU/req ratio", ".2f"), ("RPS ratio", ".2f"), ("added p50 ms", ""),
         ("<= 1.2x", "<")],
        [[c["scenario"], c["concurrency"], c["cpu_ratio"], c["rps_ratio"],
          "-" if c["added_p50_ms"] is None else f"{c['added_p50_ms']:+.3f}",
          "PASS" if c["cpu_ratio"] <= BILLING_TARGET else "MISS"] for c in billing],
    )  # fmt: skip
    print("\nLedger alone, one hold + its settlement, in this process:")
    print_rows([("backend", "<"), ("mode", "<"), ("calls", ""), ("us per request", ".1f"), ("requests/s", ".0f"),
                ("round trips before upstream", ""), ("after", "")],
               [[c["backend"], c["mode"], c["calls"], c["us_per_request"], c["requests_per_s"],
                 c["round_trips_before_upstream"], c["round_trips_after"]] for c in ledger])  # fmt: skip
    with_redis = compare(results, "gateway-redis", "bare")
    if with_redis:
        print("\nGateway with its limits in Redis vs bare relay (same run):")
        print_rows(
            [("scenario", "<"), ("conc", ""), ("CPU/req ratio", ".2f"), ("RPS ratio", ".2f"), ("added p50 ms", "")],
            [[c["scenario"], c["concurrency"], c["cpu_ratio"], c["rps_ratio"],
              "-" if c["added_p50_ms"] is None else f"{c['added_p50_ms']:+.3f}"] for c in with_redis],
        )  # fmt: skip
    workers = compare(results, "gateway-workers", "gateway-redis")
    if workers:
        print(
            f"\n{args.workers} worker processes vs one, both with their limits in Redis (same run; the load comes"
            " from this process, on the same cores):"
        )
        print_rows(
            [("scenario", "<"), ("conc", ""), ("CPU/req ratio", ".2f"), ("RPS ratio", ".2f"), ("added p50 ms", "")],
            [[c["scenario"], c["concurrency"], c["cpu_ratio"], c["rps_ratio"],
              "-" if c["added_p50_ms"] is None else f"{c['added_p50_ms']:+.3f}"] for c in workers],
        )  # fmt: skip
    print("\nLimiter alone, one admission + its release, sequential, in this process:")
    print_rows([("backend", "<"), ("calls", ""), ("us per request", ".1f"), ("round trips", "")],
               [[c["backend"], c["calls"], c["us_per_request"], c["round_trips"]] for c in costs])  # fmt: skip
    if gateway_log:
        print(f"\ngateway log (warnings and above):\n{gateway_log}")
    if args.json:
        data = {"info": info, "results": [asdict(r) for r in results], "gateway_vs_bare": rows,
                "translated_vs_passthrough": translated, "redis_gateway_vs_bare": with_redis,
                "limiter": costs, "billing_on_vs_off": billing, "ledger": ledger,
                "workers_vs_one": workers}  # fmt: skip
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
