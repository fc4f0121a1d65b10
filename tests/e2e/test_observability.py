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
        for _ in range(200):
            try:
                requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
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
