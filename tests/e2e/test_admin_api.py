"""The admin API under /admin/, with httpx as the operator's tooling (and a payment webhook
that retries), behind IZZI_ADMIN_TOKEN."""

from __future__ import annotations

import httpx
import openai
import pytest

from izzi_proxy.config import load_config
from izzi_proxy.pricing import MICRO, credits
from tests.conftest import Gateway, start_gateway, write_config

TOKEN = "admin-" + "x" * 32


@pytest.fixture
async def admin_gateway(aiohttp_server, upstream, tmp_path, upstream_env, monkeypatch) -> Gateway:
    monkeypatch.setenv("IZZI_ADMIN_TOKEN", TOKEN)
    return await start_gateway(aiohttp_server, load_config(write_config(tmp_path, str(upstream.make_url("/v1")))),
                               upstream)  # fmt: skip


@pytest.fixture
async def http(admin_gateway: Gateway):
    base = str(admin_gateway.server.make_url("/admin"))
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


async def test_the_token_is_required_and_compared(admin_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=str(admin_gateway.server.make_url("/admin"))) as anyone:
        missing = await anyone.get("/accounts")
        wrong = await anyone.get("/accounts", headers={"Authorization": "Bearer admin-wrong-token-123456"})
        a_key = await anyone.get("/accounts", headers={"Authorization": f"Bearer {admin_gateway.key}"})
    assert missing.status_code == wrong.status_code == a_key.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert "admin-wrong-token-123456" not in wrong.text


async def test_off_without_a_token(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=str(gateway.server.make_url("/admin"))) as anyone:
        resp = await anyone.get("/accounts", headers={"Authorization": "Bearer anything-at-all-here"})
    assert resp.status_code == 401 and "IZZI_ADMIN_TOKEN" in resp.json()["error"]["message"]


async def test_accounts_keys_top_ups_and_usage(admin_gateway: Gateway, http: httpx.AsyncClient) -> None:
    created = await http.post("/accounts", json={"name": "acme", "plan": "pro", "overrides": {"monthly_budget": 50}})
    assert created.status_code == 201 and created.json()["overrides"] == {"monthly_budget": "50.000000"}
    assert (await http.post("/accounts", json={"name": "acme"})).status_code == 409
    bad = await http.post("/accounts", json={"name": "x", "overrides": {"rpm": 0}})
    assert bad.status_code == 400 and "rpm" in bad.json()["error"]["message"]

    key = await http.post("/accounts/acme/keys", json={"name": "laptop"})
    assert key.status_code == 201
    secret = key.json()["key"]
    assert secret.startswith("izzi-") and key.json()["prefix"] == secret[:11]

    # a payment webhook tops up, then retries the same delivery
    webhook = {"Idempotency-Key": "payment-42"}
    first = await http.post("/accounts/acme/credits", json={"amount": "10", "bonus_pct": "25", "note": "VietQR"},
                            headers=webhook)  # fmt: skip
    again = await http.post("/accounts/acme/credits", json={"amount": "10", "bonus_pct": "25", "note": "VietQR"},
                            headers=webhook)  # fmt: skip
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["replayed"]
    assert first.json()["amount"] == "12.500000" and first.json()["bonus"] == "2.500000"
    assert again.json()["balance"] == "12.500000"
    other = await http.post("/accounts/acme/credits", json={"amount": "99"}, headers=webhook)
    assert other.status_code == 409
    for wrong in ({"amount": 1.5}, {"amount": "0.0000001"}, {"amount": "-1"}, {}):
        resp = await http.post("/accounts/acme/credits", json=wrong)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "amount", wrong

    async with openai.AsyncOpenAI(base_url=admin_gateway.url, api_key=secret, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
    record = await admin_gateway.record(raw.headers["x-request-id"])
    account = (await http.get("/accounts/acme")).json()
    assert account["balance"] == credits(int(12.5 * MICRO) - record.cost) and account["holds"] == []
    assert [k["name"] for k in account["keys"]] == ["laptop"] and "key" not in account["keys"][0]

    usage = (await http.get("/usage", params={"by": "account", "account": "acme"})).json()
    assert usage["data"] == [{"group": "acme", "requests": 1, "errors": 0,
                              "input_tokens": record.usage.input_tokens, "output_tokens": record.usage.output_tokens,
                              "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
                              "cost": credits(record.cost), "unbilled": "0.000000"}]  # fmt: skip
    records = (await http.get("/records", params={"account": "acme"})).json()["data"]
    assert [r["request_id"] for r in records] == [record.request_id] and records[0]["cost"] == credits(record.cost)
    assert (await http.get("/holds")).json()["data"] == []
    assert (await http.get("/usage", params={"by": "planet"})).status_code == 400
    assert len((await http.get("/accounts/acme/credits")).json()["data"]) == 1

    assert (await http.patch("/accounts/acme", json={"plan": "free"})).json()["plan"] == "free"
    key_id = key.json()["id"]
    assert (await http.delete(f"/keys/{key_id}")).status_code == 200
    assert (await http.delete(f"/keys/{key_id}")).status_code == 404
    assert (await http.get("/accounts/nobody")).status_code == 404
