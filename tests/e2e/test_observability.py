"""The access log (text and JSON), probes kept out of it at INFO, and ``/readyz``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import requests

from izzi_proxy.keys import LIMITER
from izzi_proxy.masking import JsonFormatter
from tests.conftest import Gateway, free_port


def wait_until_up(port: int) -> None:
    """Until a ``serve`` started on ``port`` answers its liveness probe (at most 10 s)."""
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answered on port {port}")


async def test_the_access_line_carries_the_requests_fields(gateway: Gateway, client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="izzi.access")
    await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    line = next(r for r in caplog.records if r.name == "izzi.access" and "/v1/chat/completions" in r.getMessage())
    fields = line.fields.as_dict()
    record = (await gateway.records())[0]
    assert fields["request_id"] == record.request_id and fields["status"] == 200 and fields["outcome"] == "ok"
    assert fields["model_asked"] == "gpt-4o" and fields["model"] == "gpt-4o" and fields["upstream"] == "fake"
    assert fields["input_tokens"] == record.usage.input_tokens and fields["output_tokens"] == record.usage.output_tokens
    assert fields["cost"] == pytest.approx(record.cost / 1_000_000) and fields["cost"] > 0
    assert fields["key_prefix"] == gateway.key[:11] or gateway.key.startswith(fields["key_prefix"])
    assert fields["ttft_ms"] is not None and fields["latency_ms"] > 0
    as_json = json.loads(JsonFormatter().format(line))
    assert as_json["level"] == "info" and as_json["logger"] == "izzi.access" and as_json["model"] == "gpt-4o"
    assert gateway.key not in json.dumps(as_json) and gateway.key not in line.getMessage()


async def test_probes_are_not_logged_at_info(gateway: Gateway, caplog) -> None:
    caplog.set_level(logging.INFO, logger="izzi.access")
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(gateway.server.make_url(path)) as response:
                assert response.status == 200
    assert not [r for r in caplog.records if r.name == "izzi.access"]


async def test_readyz_names_what_failed(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.server.make_url("/readyz")) as response:
            assert response.status == 200
            assert await response.json() == {"status": "ready", "checks": {"ledger": "ok", "limiter": "ok"}}

        class Down:
            async def ping(self) -> None:
                raise ConnectionError("Error 111 connecting to redis://:secretpass@10.0.0.9:6379")

        guarded = gateway.app[LIMITER]
        saved = guarded._backend
        guarded._backend = Down()
        try:
            async with session.get(gateway.server.make_url("/readyz")) as response:
                body = await response.json()
        finally:
            guarded._backend = saved
    assert response.status == 503 and body["status"] == "not ready" and body["checks"]["ledger"] == "ok"
    assert body["checks"]["limiter"].startswith("failed: Error 111") and "secretpass" not in body["checks"]["limiter"]


def test_serve_writes_json_lines_when_asked(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "IZZI_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "IZZI_LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "izzi_proxy", "serve", "--mock", "--port", str(port)],
                               env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_until_up(port)
        requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    access = next(line for line in lines if line["logger"] == "izzi.access")
    assert access["path"] == "/v1/models" and access["status"] == 401 and access["key_prefix"] is None
    assert {"ts", "level", "message", "request_id", "latency_ms"} <= set(access)


def test_the_log_format_is_checked() -> None:
    from izzi_proxy.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="log_format"):
        load_config(None, env={"IZZI_LOG_FORMAT": "xml"})
    assert dataclasses.asdict(load_config(None, env={}).server)["log_format"] == "text"


# -- GET /metrics ------------------------------------------------------------------------------------

ADMIN = "admin-token-for-metrics-tests"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def value(found: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


@pytest.fixture
async def metered(
    aiohttp_server, upstream, anthropic_upstream, gemini_upstream, tmp_path, upstream_env, monkeypatch
) -> Gateway:
    from izzi_proxy.config import load_config
    from tests.conftest import start_gateway, write_config

    monkeypatch.setenv("IZZI_ADMIN_TOKEN", ADMIN)
    path = write_config(tmp_path, str(upstream.make_url("/v1")), anthropic_url=str(anthropic_upstream.make_url("")),
                        gemini_url=str(gemini_upstream.make_url("/v1beta")))  # fmt: skip
    return await start_gateway(aiohttp_server, load_config(path), upstream)


async def scrape(gateway: Gateway, token: str | None = ADMIN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.server.make_url("/metrics"), headers=headers) as r,
    ):
        return r.status, await r.text()


async def test_metrics_move_with_requests(metered: Gateway) -> None:
    status, text = await scrape(metered)
    assert status == 200
    before = samples(text)
    async with metered.client() as client:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        async for _ in stream:
            pass
        await client.chat.completions.create(model="fallback", messages=[{"role": "user", "content": "Hi"}])
        import openai

        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    await metered.records()
    after = samples((await scrape(metered))[1])
    route = "/v1/chat/completions"

    def moved(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("izzi_requests_total", route=route, model="gpt-4o", status="200", upstream="fake") == 2
    assert moved("izzi_requests_total", route=route, status="404") == 1
    assert moved("izzi_errors_total", type="not_found", status="404") == 1
    assert moved("izzi_request_duration_seconds_count", route=route) == 4
    assert moved("izzi_time_to_first_token_seconds_count", model="gpt-4o") == 2
    records = [r for r in await metered.records() if r.model == "gpt-4o"]
    assert moved("izzi_tokens_total", model="gpt-4o", kind="output") == sum(r.usage.output_tokens for r in records)
    assert moved("izzi_cost_credits_total", model="gpt-4o") == pytest.approx(sum(r.cost for r in records) / 1e6)
    assert (
        moved("izzi_fallbacks_total", model="fallback") == 1
        and moved("izzi_upstream_attempts_total", model="fallback") == 2
    )
    assert value(after, "izzi_streams_in_flight") == 0 and value(after, "izzi_usage_records_waiting") == 0
    assert ("izzi_upstream_circuit_open", (("upstream", "fake"),)) in after


async def test_metrics_need_the_admin_token_by_default(metered: Gateway) -> None:
    assert (await scrape(metered, None))[0] == 401
    assert (await scrape(metered, metered.key))[0] == 401  # a user's key is not the operator's


async def test_limit_rejections_are_counted_by_type(
    aiohttp_server, upstream, tmp_path, upstream_env, monkeypatch
) -> None:
    from izzi_proxy.config import load_config
    from tests.conftest import start_gateway, write_config

    monkeypatch.setenv("IZZI_ADMIN_TOKEN", ADMIN)
    gateway = await start_gateway(
        aiohttp_server,
        load_config(write_config(tmp_path, str(upstream.make_url("/v1")))),
        upstream,
        plan="counted",
        credits=0,
    )
    import openai

    async with gateway.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 402
    found = samples((await scrape(gateway))[1])
    assert value(found, "izzi_errors_total", type="insufficient_balance", status="402") == 1


def test_metrics_from_several_processes_add_up(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (several workers), a scrape sums every process's counts."""
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "IZZI_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "IZZI_ADMIN_TOKEN": ADMIN,
           "PROMETHEUS_MULTIPROC_DIR": str(folder)}  # fmt: skip
    ports = [free_port(), free_port()]
    processes = [subprocess.Popen([sys.executable, "-m", "izzi_proxy", "serve", "--mock", "--port", str(p)], env=env,
                                  stderr=subprocess.DEVNULL) for p in ports]  # fmt: skip
    try:
        for port in ports:
            wait_until_up(port)
        for port in ports:
            requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)  # 401: no key
        text = requests.get(
            f"http://127.0.0.1:{ports[0]}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        ).text
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    assert value(samples(text), "izzi_requests_total", route="/v1/models", status="401") == 2
