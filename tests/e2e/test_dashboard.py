"""The dashboard over HTTP, as a browser speaks to it: sign-in, cookies, CSRF, the operator's
actions and the user's view, with real requests made through the gateway by the SDKs.
(The same flows in a real browser: ``test_dashboard_browser.py``.)"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie

import aiohttp
import openai
import orjson
import pytest
from yarl import URL

from izzi_proxy.config import load_config
from izzi_proxy.keys import SESSIONS
from izzi_proxy.pricing import MICRO
from tests.conftest import Gateway, start_gateway, write_config

TOKEN = "admin-" + "d" * 32
HI = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def gateway(aiohttp_server, upstream, anthropic_upstream, tmp_path, upstream_env, monkeypatch) -> Gateway:
    monkeypatch.setenv("IZZI_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("IZZI_SESSION_SECRET", raising=False)
    path = write_config(tmp_path, str(upstream.make_url("/v1")), anthropic_url=str(anthropic_upstream.make_url("")),
                        extra="[ip_block]\nmax_failures = 3\n")  # fmt: skip
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream, plan="pro")
    gateway.anthropic_upstream = anthropic_upstream
    return gateway


class Browser:
    """A cookie-keeping HTTP client that reads a page's CSRF token as a browser would submit it."""

    def __init__(self, session: aiohttp.ClientSession, base: URL) -> None:
        self.session, self.base = session, base
        self.csrf = ""

    async def get(self, path: str, **kwargs) -> tuple[int, str]:
        async with self.session.get(self.base.join(URL(path)), **kwargs) as resp:
            text = await resp.text()
            if found := re.search(r'name="csrf" value="([^"]+)"', text):
                self.csrf = found.group(1)
            return resp.status, text

    async def post(self, path: str, data: dict | list | None = None, csrf: bool = True, **kwargs):
        fields = list(data.items()) if isinstance(data, dict) else list(data or [])
        if csrf:
            fields.append(("csrf", self.csrf))
        async with self.session.post(self.base.join(URL(path)), data=fields, allow_redirects=False, **kwargs) as resp:
            return resp.status, resp.headers.get("Location"), await resp.text(), resp.headers.getall("Set-Cookie", [])

    async def sign_in(self, secret: str) -> str | None:
        await self.get("/dashboard/login")
        status, location, text, _ = await self.post("/dashboard/login", {"secret": secret})
        assert status == 303, text
        return location


@asynccontextmanager
async def browser(gateway: Gateway) -> AsyncIterator[Browser]:
    base = gateway.server.make_url("/")
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield Browser(session, base)


def cookie(headers: list[str], name: str):
    for header in headers:
        parsed = SimpleCookie(header)
        if name in parsed:
            return parsed[name]
    raise AssertionError(f"no Set-Cookie for {name} in {headers}")


async def test_signing_in_sets_a_session_cookie_that_holds_no_key(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        async with b.session.get(b.base.join(URL("/dashboard")), allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"
        status, page = await b.get("/dashboard/login")
        assert status == 200 and 'type="password" name="secret"' in page
        status, location, _, cookies = await b.post("/dashboard/login", {"secret": gateway.key})
        assert (status, location) == (303, "/dashboard/me")
        session = cookie(cookies, "izzi_session")
        assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == "/dashboard"
        assert session["secure"]  # a loopback host counts as secure, as browsers treat it
        assert gateway.key not in session.value and gateway.key[5:20] not in session.value
        assert int(session["max-age"]) == 12 * 3600
        status, page = await b.get("/dashboard/me")
        assert status == 200 and "test-account" in page and gateway.key not in page


async def test_the_pages_forbid_inline_script_and_framing(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        await b.sign_in(gateway.key)
        async with b.session.get(b.base.join(URL("/dashboard/me"))) as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
        async with aiohttp.ClientSession() as anyone:  # assets need no session
            for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")):
                resp = await anyone.get(b.base.join(URL(f"/dashboard/static/{name}")))
                assert resp.status == 200 and resp.content_type == kind
        async with b.session.get(b.base.join(URL("/dashboard/static/../../izzi.toml"))) as resp:
            assert resp.status == 404


async def test_a_wrong_key_is_refused_masked_and_counts_toward_blocking_the_ip(gateway: Gateway) -> None:
    wrong = "izzi-" + "w" * 43
    async with browser(gateway) as b:
        await b.get("/dashboard/login")
        for _ in range(2):
            status, _, page, _ = await b.post("/dashboard/login", {"secret": wrong})
            assert status == 401 and "neither a live API key nor the admin token" in page
            assert wrong not in page and "izzi-w" in page  # masked
        status, _, page, _ = await b.post("/dashboard/login", {"secret": wrong})
        assert status == 403 and "Too many failed authentications" in page
        # and the API sees the same block
        async with b.session.get(
            b.base.join(URL("/v1/models")), headers={"Authorization": f"Bearer {gateway.key}"}
        ) as r:
            assert r.status == 403 and (await r.json())["error"]["type"] == "ip_blocked"


async def test_every_form_needs_its_csrf_token(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        await b.get("/dashboard/login")
        status, _, page, _ = await b.post("/dashboard/login", {"secret": gateway.key}, csrf=False)
        assert status == 403 and "expired" in page
        b.csrf = "forged"
        status, _, _, _ = await b.post("/dashboard/login", {"secret": gateway.key})
        assert status == 403
        await b.sign_in(TOKEN)
        await b.get("/dashboard/admin/accounts")
        for token in (None, "x" * 43):
            fields = {"name": "sneaky"} if token is None else {"name": "sneaky", "csrf": token}
            status, _, page, _ = await b.post("/dashboard/admin/accounts", fields, csrf=False)
            assert status == 403 and "This form has expired" in page
        assert await gateway.ledger.get_account("sneaky") is None
        status, _, _, _ = await b.post("/dashboard/admin/accounts", {"name": "proper"})
        assert status == 303 and await gateway.ledger.get_account("proper") is not None


async def test_a_forged_or_tampered_session_is_not_a_session(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        await b.sign_in(gateway.key)
        real = next(c for c in b.session.cookie_jar if c.key == "izzi_session").value
        body, mac = real.split(".")
        payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        forged = base64.urlsafe_b64encode(orjson.dumps({**payload, "r": "operator"})).rstrip(b"=").decode()
        for value in (f"{forged}.{mac}", f"{body}.{'A' * len(mac)}", "garbage", body):
            b.session.cookie_jar.update_cookies({"izzi_session": value}, b.base)
            async with b.session.get(b.base.join(URL("/dashboard/admin")), allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login", value
        b.session.cookie_jar.update_cookies({"izzi_session": real}, b.base)
        status, _ = await b.get("/dashboard/me")
        assert status == 200
        # a user's session does not open the operator's view
        async with b.session.get(b.base.join(URL("/dashboard/admin/accounts")), allow_redirects=False) as resp:
            assert resp.status == 303


async def test_revoking_the_key_ends_its_sessions(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        await b.sign_in(gateway.key)
        assert (await b.get("/dashboard/me"))[0] == 200
        (key,) = await gateway.ledger.list_keys((await gateway.ledger.get_account("test-account")).id)
        await gateway.ledger.revoke_key(key.id)
        async with b.session.get(b.base.join(URL("/dashboard/me")), allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"
        assert not [c for c in b.session.cookie_jar if c.key == "izzi_session" and c.value]


async def test_signing_out_ends_the_session(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        await b.sign_in(TOKEN)
        await b.get("/dashboard/admin")
        status, location, _, cookies = await b.post("/dashboard/logout")
        assert (status, location) == (303, "/dashboard/login")
        assert cookie(cookies, "izzi_session").value == ""
        async with b.session.get(b.base.join(URL("/dashboard/admin")), allow_redirects=False) as resp:
            assert resp.status == 303


async def test_the_operator_runs_accounts_keys_and_top_ups(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        assert await b.sign_in(TOKEN) == "/dashboard/admin"
        await b.get("/dashboard/admin/accounts")
        status, location, _, _ = await b.post("/dashboard/admin/accounts", {"name": "acme co", "plan": "pro"})
        assert (status, location) == (303, "/dashboard/admin/accounts/acme%20co")
        status, page = await b.get(location)
        assert status == 200 and "acme co" in page and "No keys." in page
        # a key, shown once
        status, _, page, _ = await b.post(location + "/keys", [("key_name", "laptop"), ("expires_days", "30"),
                                                               ("models", "gpt-4o"), ("models", "tier:budget")])  # fmt: skip
        assert status == 201
        secret = re.search(r'<code id="new-secret">(izzi-[^<]+)</code>', page).group(1)
        account = await gateway.ledger.get_account("acme co")
        (key,) = await gateway.ledger.list_keys(account.id)
        assert (
            key.name == "laptop"
            and key.allow == ("gpt-4o", "tier:budget")
            and key.expires_at > time.time() + 29 * 86400
        )
        assert await gateway.ledger.find_key(secret) is not None
        status, page = await b.get(location)
        assert secret not in page and key.prefix in page
        # a top-up, sent twice from one form, credits once
        form = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
        for _ in range(2):
            status, where, _, _ = await b.post(location + "/credits", {"amount": "12.5", "bonus_pct": "10",
                                                                       "note": "transfer 42", "idempotency_key": form})  # fmt: skip
            assert status == 303 and "credited=" in where
        balance = await gateway.ledger.balance_of(account.id)
        assert balance.balance == 13_750_000
        status, page = await b.get(location)
        assert "13.750000" in page and "transfer 42" in page
        # the plan and overrides
        status, _, _, _ = await b.post(location, [("plan", "free"), ("rpm", "7"), ("monthly_budget", "20"),
                                                  ("tiers", "budget"), ("daily", "")])  # fmt: skip
        assert status == 303
        account = await gateway.ledger.get_account("acme co")
        assert account.plan == "free" and account.overrides == {
            "rpm": 7,
            "monthly_budget": "20.000000",
            "tiers": ["budget"],
        }
        # revoked
        status, _ = await b.get(location)
        status, where, _, _ = await b.post(f"{location}/keys/{key.id}/revoke")
        assert status == 303 and await gateway.ledger.find_key(secret) is None
        status, page = await b.get(location)
        assert "revoked" in page


async def test_an_account_name_with_a_slash_is_one_path_segment(gateway: Gateway) -> None:
    async with browser(gateway) as b:
        await b.sign_in(TOKEN)
        await b.get("/dashboard/admin/accounts")
        status, location, _, _ = await b.post("/dashboard/admin/accounts", {"name": "team/a b"})
        assert (status, location) == (303, "/dashboard/admin/accounts/team%2Fa%20b")
        status, page = await b.get(location)
        assert status == 200 and "team/a b" in page
        status, where, _, _ = await b.post(location + "/credits", {"amount": "1", "idempotency_key": "k1"})
        assert status == 303 and where.startswith(location)
        account = await gateway.ledger.get_account("team/a b")
        assert (await gateway.ledger.balance_of(account.id)).balance == MICRO


@pytest.mark.parametrize(("path", "fields", "named"), [
    ("/dashboard/admin/accounts/test-account/credits", {"amount": "abc"}, "amount"),
    ("/dashboard/admin/accounts/test-account/credits", {"amount": "1", "bonus_pct": "300"}, "between 0 and 100"),
    ("/dashboard/admin/accounts/test-account/keys", {"expires_days": "-1"}, "expires_days"),
    ("/dashboard/admin/accounts/test-account/keys", {"models": "no-such-model"}, "no-such-model"),
    ("/dashboard/admin/accounts/test-account", {"rpm": "lots"}, "rpm"),
    ("/dashboard/admin/accounts/test-account", {"plan": "platinum"}, "platinum"),
    ("/dashboard/admin/accounts/nobody/credits", {"amount": "1"}, "nobody"),
    ("/dashboard/admin/accounts", {"name": "test-account"}, "exists"),
    ("/dashboard/admin/accounts", {"name": "  "}, "empty"),
])  # fmt: skip
async def test_bad_form_input_is_a_clear_4xx_page(gateway: Gateway, path: str, fields: dict, named: str) -> None:
    async with browser(gateway) as b:
        await b.sign_in(TOKEN)
        await b.get("/dashboard/admin/accounts")
        status, _, page, _ = await b.post(path, fields)
        assert 400 <= status < 500 and named in page and "Traceback" not in page
        assert "text/html" in (await b.session.get(b.base.join(URL("/dashboard/admin")))).content_type


async def test_the_user_sees_real_requests_down_to_the_cost(gateway: Gateway, client, claude) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    cached = await claude.messages.with_raw_response.create(model="claude", max_tokens=20, system=system, messages=HI)
    chat, msg = await gateway.record(raw.headers["x-request-id"]), await gateway.record(cached.headers["x-request-id"])
    assert msg.usage.cache_read_tokens > 0
    async with browser(gateway) as b:
        await b.sign_in(gateway.key)
        status, page = await b.get("/dashboard/me")
    assert status == 200
    for record in (chat, msg):
        row = page[page.index(record.request_id) :]
        row = row[: row.index("</tr>")]
        assert f"{record.cost / MICRO:.6f}" in row and f"{record.usage.input_tokens:,}" in row
    assert f"{msg.usage.cache_read_tokens:,}" in page
    balance = await gateway.ledger.balance_of(chat.account_id)
    assert f"{balance.balance / MICRO:.6f}" in page
    assert f"{(chat.cost + msg.cost) / MICRO:.6f}" in page  # spent over the range
    assert "<svg" in page and "gpt-4o" in page and "claude" in page  # the charts, by model
    assert "59 <span" in page or "58 <span" in page  # what is left of this minute's requests
    assert "/configure.py | python3 - --only &#34;Claude Code&#34;" in page


async def test_a_user_makes_and_revokes_their_own_keys(gateway: Gateway) -> None:
    other = await gateway.ledger.create_account("someone-else", "pro")
    theirs, _ = await gateway.ledger.create_key(other.id, "theirs")
    async with browser(gateway) as b:
        await b.sign_in(gateway.key)
        await b.get("/dashboard/me")
        status, _, page, _ = await b.post("/dashboard/me/keys", [("key_name", "ci"), ("models", "gpt-4o")])
        assert status == 201
        secret = re.search(r'<code id="new-secret">(izzi-[^<]+)</code>', page).group(1)
        async with gateway.client(api_key=secret) as client:  # it works, for what it allows
            await client.chat.completions.create(model="gpt-4o", messages=HI)
            with pytest.raises(openai.PermissionDeniedError):
                await client.chat.completions.create(model="claude", messages=HI)
        status, _, page, _ = await b.post(f"/dashboard/me/keys/{theirs.id}/revoke")
        assert status == 404 and "no key with id" in page
        assert (await gateway.ledger.list_keys(other.id))[0].revoked_at is None  # another account's: untouched
        new = await gateway.ledger.find_key(secret)
        status, _, _, _ = await b.post(f"/dashboard/me/keys/{new.id}/revoke")
        assert status == 303 and await gateway.ledger.find_key(secret) is None
        # the key signed in with: revoked, the session ends
        own = await gateway.ledger.find_key(gateway.key)
        await b.get("/dashboard/me")
        status, _, _, _ = await b.post(f"/dashboard/me/keys/{own.id}/revoke")
        assert status == 303
        async with b.session.get(b.base.join(URL("/dashboard/me")), allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"


async def test_a_user_holds_at_most_twenty_live_keys(gateway: Gateway) -> None:
    account = await gateway.ledger.get_account("test-account")
    for i in range(19):
        await gateway.ledger.create_key(account.id, f"k{i}")
    async with browser(gateway) as b:
        await b.sign_in(gateway.key)
        await b.get("/dashboard/me")
        status, _, page, _ = await b.post("/dashboard/me/keys", {"key_name": "one too many"})
        assert status == 400 and "at most 20 live keys" in page


async def test_the_operator_overview_draws_traffic_by_model_account_and_upstream(gateway: Gateway, client) -> None:
    await client.chat.completions.create(model="gpt-4o", messages=HI)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="error-400", messages=HI)
    await gateway.records()
    async with browser(gateway) as b:
        await b.sign_in(TOKEN)
        for by in ("model", "account", "upstream"):
            for metric in ("cost", "requests", "tokens"):
                status, page = await b.get(f"/dashboard/admin?days=7&by={by}&metric={metric}")
                assert status == 200 and "<svg" in page
        status, page = await b.get("/dashboard/admin?by=upstream")
        assert "fake" in page and "error-400" in page  # a failed request, listed
        assert "invalid_request_error" in page  # and among this process's recent errors
        status, page = await b.get("/dashboard/admin/requests?failed=1")
        assert "error-400" in page and "gpt-4o" not in page.split("<tbody>")[1]


def test_every_session_route_checks_its_session(gateway: Gateway) -> None:
    """Fail closed: a route the auth middleware leaves to the dashboard is a @page, or one
    of the sign-in's own three."""
    from izzi_proxy.dashboard import signin

    sign_in = {signin.root, signin.signin_form, signin.signin}
    checked = 0
    for route in gateway.app.router.routes():
        info = getattr(route.handler, "__izzi_route__", None)
        if info is not None and info.session:
            assert route.handler in sign_in or hasattr(route.handler, "__izzi_page__"), route
            checked += 1
    assert checked >= 15  # every dashboard route but the static files


async def test_the_dashboard_can_be_turned_off(aiohttp_server, upstream, tmp_path, upstream_env) -> None:
    path = write_config(tmp_path, str(upstream.make_url("/v1")), server="dashboard = false")
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream)
    assert SESSIONS not in gateway.app
    async with aiohttp.ClientSession() as session, session.get(gateway.server.make_url("/dashboard/login")) as resp:
        assert resp.status == 404
