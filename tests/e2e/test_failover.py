"""Failover, key pools, breakers and timeouts, seen by the official SDKs in all three dialects.

Two upstreams, ``a`` and ``b``, point at the same fake OpenAI API (and ``claude`` at the fake
Anthropic API); each model's first route fails in one way, chosen by its model name, and its
second one answers. Clients must see only the good answer; the usage record must say which
upstream answered after how many attempts.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from izzi_proxy.config import ConfigError, load_config
from tests.conftest import Gateway, start_gateway, write_config

OK = "b:upstream-ok"
FAILING = {
    "429": "a:x-error_429-retry_7",
    "500": "a:x-error_500",
    "529": "claude:error_529",
    "reset": "a:x-reset",
    "slow-first-byte": "a:x-first_byte_1500",
    "preamble-error": "a:x-preamble_error",
    "claude-preamble-error": "claude:claude-preamble_error",
    "responses-preamble-error": {"route": "a:x-preamble_error", "wire": "responses"},
}
MODELS: dict[str, list[Any]] = {
    **{f"m-{name}": [route, OK] for name, route in FAILING.items()},
    "m-after-content": ["a:x-stream_error_after_2", OK],
    "m-stall": ["a:x-stall_after_1", OK],
    "m-client-fault": ["a:x-error_400", OK],
    "m-all-fail": ["a:x-error_500", "b:x-error_503"],
    "m-flaky": ["a:x-fail_first_2", OK],
    "codex": [{"route": "a:gpt-5.1-codex-tools", "wire": "responses"}],
    "codex-on-chat": ["a:gpt-5.1-codex"],
}
UPSTREAMS = "".join(
    f"""
[upstreams.{name}]
kind = "openai"
base_url = "{{url}}"
api_key = "env:IZZI_TEST_UPSTREAM_KEY"
first_byte_timeout_s = 1
idle_timeout_s = 1
responses = true
"""
    for name in ("a", "b")
)
DIALECTS = ("chat", "messages", "responses")


async def start(aiohttp_server, upstream, anthropic_upstream, tmp_path: Path, routing: str = "") -> Gateway:
    url = str(upstream.make_url("/v1"))
    path = write_config(
        tmp_path,
        url,
        anthropic_url=str(anthropic_upstream.make_url("")),
        models=MODELS,
        extra_upstreams=UPSTREAMS.replace("{url}", url),
        extra=routing,
    )
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream)
    gateway.anthropic_upstream = anthropic_upstream
    return gateway


@pytest.fixture
async def gw(aiohttp_server, upstream, anthropic_upstream, tmp_path: Path, upstream_env: None) -> Gateway:
    return await start(aiohttp_server, upstream, anthropic_upstream, tmp_path)


async def ask(gateway: Gateway, dialect: str, model: str, stream: bool, text: str = "hi") -> str:
    """The answer's text, as the client's SDK reads it."""
    if dialect == "gemini":
        models = gateway.gemini().aio.models
        if not stream:
            return (await models.generate_content(model=model, contents=text)).text or ""
        return "".join(
            [chunk.text or "" async for chunk in await models.generate_content_stream(model=model, contents=text)]
        )
    if dialect == "messages":
        async with gateway.anthropic() as claude:
            if not stream:
                message = await claude.messages.create(
                    model=model, max_tokens=100, messages=[{"role": "user", "content": text}]
                )
                return "".join(b.text for b in message.content if b.type == "text")
            async with claude.messages.stream(
                model=model, max_tokens=100, messages=[{"role": "user", "content": text}]
            ) as events:
                return "".join([chunk async for chunk in events.text_stream])
    async with gateway.client() as client:
        if dialect == "chat":
            if not stream:
                completion = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": text}]
                )
                return completion.choices[0].message.content or ""
            chunks = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        if not stream:
            return (await client.responses.create(model=model, input=text)).output_text
        out = []
        async for event in await client.responses.create(model=model, input=text, stream=True):
            if event.type == "response.output_text.delta":
                out.append(event.delta)
        return "".join(out)


async def last_record(gateway: Gateway):
    for _ in range(100):
        if (records := await gateway.records(limit=1)) and records[0].status is not None:
            return records[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no usage record")


@pytest.mark.parametrize(
    ("failure", "dialect", "stream"),
    [
        pytest.param(failure, dialect, stream, id=f"{failure}-{dialect}-{'stream' if stream else 'plain'}")
        for failure in FAILING
        for dialect in DIALECTS
        for stream in (False, True)
        if stream or "preamble" not in failure  # a preamble is a stream's
    ],
)
async def test_one_failing_upstream_is_invisible(gw: Gateway, failure: str, dialect: str, stream: bool) -> None:
    assert await ask(gw, dialect, f"m-{failure}", stream) == "Echo: hi"
    record = await last_record(gw)
    assert (record.upstream, record.upstream_model, record.attempts) == ("b", "upstream-ok", 2)
    assert record.outcome == "ok" and record.status == 200
    story = record.extra["failovers"]  # a 429 also says the key rests (a's next call is skipped)
    assert story[0].startswith("claude: " if "claude" in str(FAILING[failure]) else "a: ")
    assert story[1:] == (["a: skipped, every key resting for 7 s"] if failure == "429" else [])


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_no_retry_once_content_reached_the_client(gw: Gateway, dialect: str) -> None:
    before = len(gw.received)
    errors = (openai.APIError, anthropic.APIError)
    with pytest.raises(errors):
        await ask(gw, dialect, "m-after-content", stream=True)
    assert [r.body["model"] for r in gw.received[before:]] == ["x-stream_error_after_2"]  # b never asked
    record = await last_record(gw)
    assert (record.upstream, record.attempts, record.outcome) == ("a", 1, "error")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_stalled_stream_ends_with_an_error_event(gw: Gateway, dialect: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises((openai.APIError, anthropic.APIError)) as caught:
        await ask(gw, dialect, "m-stall", stream=True)
    assert loop.time() - started < 5  # the idle timeout (1 s), not a hang
    assert "sent nothing for 1 s" in str(caught.value)
    assert (await last_record(gw)).error_type == "connection_error"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_client_fault_is_not_retried(gw: Gateway, stream: bool) -> None:
    before = len(gw.received)
    with pytest.raises(openai.BadRequestError):
        await ask(gw, "chat", "m-client-fault", stream)
    assert len(gw.received) == before + 1
    assert (await last_record(gw)).attempts == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_all_failing_is_one_clear_502(gw: Gateway, dialect: str) -> None:
    errors = (openai.InternalServerError, anthropic.InternalServerError)
    with pytest.raises(errors) as caught:
        await ask(gw, dialect, "m-all-fail", stream=True)
    assert caught.value.status_code == 502
    message = str(caught.value)
    assert "could not be served" in message and "a: HTTP 500" in message and "b: HTTP 503" in message
    record = await last_record(gw)
    assert record.attempts == 2 and record.extra["failovers"] == ["a: HTTP 500", "b: HTTP 503"]


async def test_the_attempt_budget_bounds_the_calls(
    aiohttp_server, upstream, anthropic_upstream, tmp_path: Path, upstream_env: None
) -> None:
    gateway = await start(aiohttp_server, upstream, anthropic_upstream, tmp_path, "[routing]\nmax_attempts = 1\n")
    with pytest.raises(openai.InternalServerError):
        await ask(gateway, "chat", "m-500", stream=False)
    assert [r.body["model"] for r in gateway.received] == ["x-error_500"]


async def test_a_429_rests_the_key_for_its_retry_after(gw: Gateway) -> None:
    assert await ask(gw, "chat", "m-429", stream=False) == "Echo: hi"
    assert await ask(gw, "chat", "m-429", stream=False) == "Echo: hi"
    tried = [r.body["model"] for r in gw.received]
    assert tried.count("x-error_429-retry_7") == 1  # the second request skipped a: its key rests
    views = await admin_view(gw)
    (key,) = views["a"]["keys"]
    assert key["state"] == "cooling" and 5 < key["cooling_for_s"] <= 7
    assert views["a"]["breaker"]["state"] == "closed"  # a 429 is not a failure of the upstream
    assert "sk-upstream-test" not in str(views)


ADMIN_TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IZZI_ADMIN_TOKEN", ADMIN_TOKEN)


async def admin(gateway: Gateway, method: str, path: str) -> dict[str, Any]:
    """The admin API's answer (asserted 200)."""
    headers = {"Authorization": "Bearer " + ADMIN_TOKEN}
    body = {} if method == "POST" else None
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, str(gateway.server.make_url(path)), json=body, headers=headers) as response,
    ):
        assert response.status == 200, f"{response.status}: {await response.text()}"
        return await response.json()


async def admin_post(gateway: Gateway, path: str) -> dict[str, Any]:
    return await admin(gateway, "POST", path)


async def admin_view(gateway: Gateway) -> dict[str, Any]:
    return {v["upstream"]: v for v in (await admin(gateway, "GET", "/admin/upstreams"))["data"]}


async def test_the_breaker_opens_skips_and_recovers(
    aiohttp_server, upstream, anthropic_upstream, tmp_path: Path, upstream_env: None
) -> None:
    routing = "[routing]\nbreaker_failures = 2\nbreaker_open_s = 0.5\n"
    gateway = await start(aiohttp_server, upstream, anthropic_upstream, tmp_path, routing)

    def calls_to_a() -> int:
        return sum(1 for r in gateway.received if r.body["model"] == "x-fail_first_2")

    for _ in range(2):
        assert await ask(gateway, "chat", "m-flaky", stream=True) == "Echo: hi"
    assert calls_to_a() == 2 and (await admin_view(gateway))["a"]["breaker"]["state"] == "open"
    assert await ask(gateway, "chat", "m-flaky", stream=False) == "Echo: hi"
    assert calls_to_a() == 2  # skipped while open: no time spent on it
    assert (await last_record(gateway)).attempts == 1
    await asyncio.sleep(0.6)
    assert await ask(gateway, "chat", "m-flaky", stream=False) == "Echo: hi"  # the probe, which a answers
    assert calls_to_a() == 3
    record = await last_record(gateway)
    assert (record.upstream, record.attempts) == ("a", 1)
    assert (await admin_view(gateway))["a"]["breaker"] == {"state": "closed", "consecutive_failures": 0,
                                                          "retry_in_s": 0.0}  # fmt: skip


async def test_a_model_whose_only_upstream_is_failing_answers_at_once(
    aiohttp_server, upstream, anthropic_upstream, tmp_path: Path, upstream_env: None
) -> None:
    routing = "[routing]\nbreaker_failures = 1\nbreaker_open_s = 30\n"
    gateway = await start(aiohttp_server, upstream, anthropic_upstream, tmp_path, routing)
    async with gateway.client() as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m-all-fail", messages=[{"role": "user", "content": "hi"}])
        before = len(gateway.received)
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m-all-fail", messages=[{"role": "user", "content": "hi"}])
    assert len(gateway.received) == before  # both breakers open: no upstream asked, no time spent
    assert "a: skipped, failing (retry in 30 s)" in caught.value.message
    assert 29 <= int(caught.value.response.headers["Retry-After"]) <= 30
    record = await last_record(gateway)
    assert record.attempts == 0 and record.status == 502


def pool_app(keys_seen: list[str]) -> web.Application:
    """An OpenAI-like upstream that rate-limits one key and refuses another."""

    async def chat(request: web.Request) -> web.Response:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        keys_seen.append(key)
        if key == "sk-pool-limited-000000":
            error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
            return web.json_response({"error": error}, status=429, headers={"Retry-After": "20"})
        if key == "sk-pool-revoked-000000":
            error = {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
            return web.json_response({"error": error}, status=401)
        body = await request.json()
        answer = {
            "id": "chatcmpl-pool", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"via {key[-8:]}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }  # fmt: skip
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_a_key_pool_rotates_rests_and_disables_keys_on_their_own(
    aiohttp_server, upstream, tmp_path: Path, upstream_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    pool = await aiohttp_server(pool_app(seen))
    keys = {"POOL_K1": "sk-pool-good-aaaaaaaaa1", "POOL_K2": "sk-pool-limited-000000",
            "POOL_K3": "sk-pool-revoked-000000", "POOL_K4": "sk-pool-good-aaaaaaaaa4"}  # fmt: skip
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    path = write_config(
        tmp_path,
        str(upstream.make_url("/v1")),
        models={"pooled": ["pool:gpt-4o"]},
        extra_upstreams=(
            f'[upstreams.pool]\nkind = "openai"\nbase_url = "{pool.make_url("/v1")}"\n'
            f"api_keys = [{', '.join(f'{chr(34)}env:{k}{chr(34)}' for k in keys)}]\n"
        ),
    )
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream)
    answers = [await ask(gateway, "chat", "pooled", stream=False) for _ in range(5)]
    # k1; k2 (429: rests) -> k3 (401: disabled) -> k4; then k1, k4, k1: only the good keys
    assert answers == ["via aaaaaaa1", "via aaaaaaa4", "via aaaaaaa1", "via aaaaaaa4", "via aaaaaaa1"]
    assert seen.count("sk-pool-limited-000000") == 1 and seen.count("sk-pool-revoked-000000") == 1
    view = (await admin_view(gateway))["pool"]
    assert [k["key"] for k in view["keys"]] == ["sk-p…aaa1", "sk-p…0000", "sk-p…0000", "sk-p…aaa4"]
    assert [k["state"] for k in view["keys"]] == ["ready", "cooling", "disabled", "ready"]
    assert view["keys"][2]["disabled_because"] == "HTTP 401"
    assert all(not any(secret in str(k) for secret in keys.values()) for k in view["keys"])
    assert view["breaker"]["state"] == "closed"
    # the operator fixed the keys: a reset makes them all usable again, in turn
    reset = await admin_post(gateway, "/admin/upstreams/pool/reset")
    assert [k["state"] for k in reset["keys"]] == ["ready"] * 4
    with pytest.raises(AssertionError, match="404"):
        await admin_post(gateway, "/admin/upstreams/nope/reset")
    seen.clear()
    await ask(gateway, "chat", "pooled", stream=False)
    await ask(gateway, "chat", "pooled", stream=False)
    assert seen[0] == "sk-pool-limited-000000"  # the turn goes on from where it was, every key in it again


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_codex_model_is_served_on_the_responses_api(gw: Gateway, dialect: str, stream: bool) -> None:
    assert await ask(gw, dialect, "codex", stream) == "Echo: hi"
    sent = gw.received[-1]
    assert sent.path == "/v1/responses" and sent.body["model"] == "gpt-5.1-codex-tools"
    assert sent.body.get("store") is (None if dialect == "responses" else False)  # passthrough: as the client sent


async def test_a_codex_model_on_the_chat_endpoint_is_refused_as_openai_does(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(gw, "chat", "codex-on-chat", stream=False)
    assert "only supported in v1/responses" in caught.value.message


@pytest.mark.parametrize(
    ("wire", "problem"),
    [("responses", "upstream 'chatonly' does not speak 'openai_responses' (it speaks openai_chat)"),
     ("bedrock", "no wire format 'bedrock' is installed")],
)  # fmt: skip
async def test_a_route_wire_that_cannot_be_spoken_stops_the_start(
    aiohttp_server, upstream, tmp_path: Path, upstream_env: None, wire: str, problem: str
) -> None:
    path = write_config(tmp_path, str(upstream.make_url("/v1")), models={"x": [{"route": "chatonly:m", "wire": wire}]})
    with pytest.raises(ConfigError, match=re.escape(f'models."x".routes[0]: {problem}')):
        await start_gateway(aiohttp_server, load_config(path), upstream)
