"""Config loading: the bundled files, env references, and errors that name file, key, fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from izzi_proxy.catalog import TIERS
from izzi_proxy.config import DEFAULT_CONFIG, ConfigError, Secret, load_config

MODELS = '[models."m"]\nname = "M"\ntier = "budget"\ninput = 1\noutput = 2\nroutes = ["up:m-1"]\n'


def write(tmp_path: Path, izzi: str, models: str = MODELS) -> Path:
    (tmp_path / "models.toml").write_text(models)
    path = tmp_path / "izzi.toml"
    path.write_text(izzi)
    return path


UP = '[upstreams.up]\nkind = "openai"\nbase_url = "https://example.com/v1"\n'


def test_bundled_config_loads_with_the_whole_catalog() -> None:
    config = load_config(DEFAULT_CONFIG, env={})
    assert len(config.catalog) == 36  # 38 rows in the price list, two ids repeated
    assert {entry.tier for entry in config.catalog} == set(TIERS)
    counts = {tier: sum(1 for e in config.catalog if e.tier == tier) for tier in TIERS}
    assert counts == {"maintained": 9, "budget": 9, "standard": 7, "premium": 11}
    assert config.catalog.resolve("gpt-5.1").prices.input == 700_000  # µcr per 1M tokens
    assert config.storage.database_url == "sqlite:///data/izzi.sqlite3"
    assert config.storage.limiter_url == "memory://"
    for upstream in config.upstreams.values():
        if upstream.kind in ("openai", "anthropic"):
            assert isinstance(upstream.api_key, Secret) and upstream.api_key.value is None


@pytest.mark.parametrize(
    ("var", "upstream", "default"),
    [
        ("OPENAI", "openai", "https://api.openai.com/v1"),
        ("ANTHROPIC", "anthropic", "https://api.anthropic.com"),
        ("OPENROUTER", "openrouter", "https://openrouter.ai/api/v1"),
        ("CEREBRAS", "cerebras", "https://api.cerebras.ai/v1"),
        ("XAI", "xai", "https://api.x.ai/v1"),
        ("GEMINI", "gemini", "https://generativelanguage.googleapis.com/v1beta"),
        ("GEMINI_OPENAI", "gemini-openai", "https://generativelanguage.googleapis.com/v1beta/openai"),
    ],
)
def test_bundled_upstreams_read_conventional_variables(var: str, upstream: str, default: str) -> None:
    assert load_config(DEFAULT_CONFIG, env={}).upstreams[upstream].base_url == default
    key = "GEMINI_API_KEY" if var.startswith("GEMINI") else f"{var}_API_KEY"  # one Google key, two endpoints
    env = {f"{var}_BASE_URL": "http://10.0.0.5:8000/v1", key: "sk-from-env"}
    config = load_config(DEFAULT_CONFIG, env=env)
    assert config.upstreams[upstream].base_url == "http://10.0.0.5:8000/v1"
    assert config.upstreams[upstream].api_key == Secret(key, "sk-from-env")


def test_storage_urls_from_the_environment() -> None:
    env = {
        "IZZI_DATABASE_URL": "sqlite:////var/lib/izzi/db.sqlite3",
        "IZZI_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    config = load_config(DEFAULT_CONFIG, env=env)
    assert config.storage.database_url == env["IZZI_DATABASE_URL"]
    assert config.storage.limiter_url == env["IZZI_REDIS_URL"]


def test_secrets_never_printed() -> None:
    config = load_config(DEFAULT_CONFIG, env={"OPENAI_API_KEY": "sk-very-secret-value"})
    text = repr(config) + str(config.redacted())
    assert "sk-very-secret-value" not in text
    assert config.redacted()["upstreams"]["openai"]["api_keys"] == ["env:OPENAI_API_KEY (set)"]


def test_bundled_config_holds_no_literal_key() -> None:
    for path in DEFAULT_CONFIG.parent.glob("*.toml"):
        text = path.read_text()
        assert "sk-" not in text and "izzi-" not in text.replace("izzi-proxy", "")


@pytest.mark.parametrize(
    ("izzi", "key", "words"),
    [
        ("[server]\nport = 99999\n" + UP, "server.port", "0..65535"),
        ("[server]\nport = 'x'\n" + UP, "server.port", "expected int"),
        ("[server]\nprot = 1\n" + UP, "server.prot", "unknown key"),
        ("[server]\nmax_body_mb = 0\n" + UP, "server.max_body_mb", "greater than 0"),
        ("[server]\nlog_level = 'loud'\n" + UP, "server.log_level", "one of"),
        ("[storage]\ndatabase_url = 'mysql://x'\n" + UP, "storage.database_url", "scheme sqlite"),
        ("[storage]\nlimiter_url = 'memcached://x'\n" + UP, "storage.limiter_url", "scheme"),
        ("[storage]\nlimiter_pool_size = 0\n" + UP, "storage.limiter_pool_size", "at least 1"),
        ("", "upstreams", "at least one upstream"),
        ('[upstreams.up]\nbase_url = "https://x"\n', "upstreams.up.kind", "is required"),
        (UP + 'api_key = "sk-literal"\n', "upstreams.up.api_key", "never written in a config file"),
        (UP + 'api_keys = ["env:A", "sk-literal"]\n', "upstreams.up.api_keys[1]", "never written in a config file"),
        (UP + 'api_key = "env:A"\napi_keys = ["env:B"]\n', "upstreams.up.api_keys", "not both"),
        ("[routing]\nmax_attempts = 0\n" + UP, "routing.max_attempts", "at least 1"),
        (UP + "connect_timeout_s = -1\n", "upstreams.up.connect_timeout_s", "greater than 0"),
        ('[upstreams.up]\nkind = "openai"\nbase_url = "ftp://x"\n', "upstreams.up.base_url", "http or https"),
        (UP + 'extra_headers = { "X-A" = 1 }\n', "upstreams.up.extra_headers.X-A", "strings"),
        (UP + '[catalog]\nmodels = "missing.toml"\n', "-", "file not found"),
        ("[server\n", "-", "not valid TOML"),
        ("bogus = 1\n" + UP, "bogus", "unknown key"),
    ],
)
def test_izzi_toml_errors_name_file_and_key(tmp_path: Path, izzi: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, izzi), env={})
    assert caught.value.key == key
    assert words in caught.value.problem
    assert str(caught.value).startswith(str(tmp_path))


@pytest.mark.parametrize(
    ("models", "key", "words"),
    [
        ("", "models", "lists no model"),
        (MODELS.replace('tier = "budget"', 'tier = "gold"'), 'models."m".tier', "not one of"),
        (
            MODELS.replace('["up:m-1"]', '["nowhere:m-1"]'),
            'models."m".routes[0]',
            "unknown upstream 'nowhere'",
        ),
        (MODELS.replace('["up:m-1"]', '["m-1"]'), 'models."m".routes[0]', "<upstream>:<upstream model>"),
        (MODELS.replace('["up:m-1"]', "[]"), 'models."m".routes', "at least one route"),
        (MODELS.replace("input = 1", "input = -1"), 'models."m".input', "negative"),
        (MODELS.replace("input = 1\n", ""), 'models."m".input', "is required"),
        (MODELS + "colour = 'red'\n", 'models."m".colour', "unknown key"),
        (MODELS + "aliases = ['m']\n", 'models."m".aliases', "already taken"),
        (MODELS + "context = 0\n", 'models."m".context', "positive"),
        ('[families]\n"m-*" = "nope"\n' + MODELS, 'families."m-*"', "'nope' is not a model id"),
        ('[families]\n"m-1" = "m"\n' + MODELS, 'families."m-1"', "a pattern"),
    ],
)
def test_models_toml_errors_name_file_and_key(tmp_path: Path, models: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, UP, models), env={})
    assert caught.value.key == key, caught.value
    assert words in caught.value.problem
    assert caught.value.file.endswith("models.toml")


def test_env_values_with_defaults_and_plugin_options(tmp_path: Path) -> None:
    izzi = '[server]\nport = { env = "PORT", default = 9000 }\n' + UP + 'api_key = { env = "UP_KEY" }\nchunks = 3\n'
    config = load_config(write(tmp_path, izzi), env={"UP_KEY": "k"})
    assert config.server.port == 9000
    assert config.upstreams["up"].api_key == Secret("UP_KEY", "k")
    assert dict(config.upstreams["up"].options) == {"chunks": 3}


@pytest.mark.parametrize(
    ("line", "env", "expected"),
    [
        ('port = { env = "PORT", default = 9000 }', {"PORT": "8123"}, ("port", 8123)),
        ('shutdown_timeout_s = { env = "STOP", default = 30 }', {"STOP": "2.5"}, ("shutdown_timeout_s", 2.5)),
        ('dashboard = { env = "DASH", default = true }', {"DASH": "no"}, ("dashboard", False)),
    ],
)
def test_numbers_and_switches_from_the_environment(tmp_path: Path, line: str, env: dict, expected: tuple) -> None:
    config = load_config(write(tmp_path, f"[server]\n{line}\n" + UP), env=env)
    assert getattr(config.server, expected[0]) == expected[1]


def test_a_number_from_the_environment_that_is_not_one_names_the_variable_s_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[server]\nport = { env = "PORT" }\n' + UP), env={"PORT": "eighty"})
    assert caught.value.key == "server.port" and "'eighty'" in caught.value.problem


def test_mock_upstreams_keep_the_catalog() -> None:
    config = load_config(DEFAULT_CONFIG, env={}).with_mock_upstreams()
    assert {u.kind for u in config.upstreams.values()} == {"mock"}
    assert dict(config.upstreams["openai"].options) == dict(config.upstreams["mock"].options)
    assert len(config.catalog) == 36


def test_bundled_plans_are_the_seeds() -> None:
    plans = load_config(DEFAULT_CONFIG, env={}).limits.plans
    rows = {p.id: (p.rpm, p.concurrent, p.daily, p.credits_per_5h) for p in plans.values()}
    assert rows == {
        "free": (10, 1, 100, None),
        "starter": (30, 2, 1000, 35),
        "pro": (60, 3, 2000, 80),
        "max": (90, 6, 5000, 180),
        "ultra": (120, 8, 10000, 400),
    }
    assert plans["free"].tiers == {"maintained"} and plans["pro"].tiers == set(TIERS)


@pytest.mark.parametrize(
    ("plans", "key", "words"),
    [
        ('default = "gold"\n[plans.free]\nrpm = 1\nconcurrent = 1\ndaily = 1\ntiers = []\n', "default", "not a plan"),
        (
            'default = "free"\n[plans.free]\nrpm = 0\nconcurrent = 1\ndaily = 1\ntiers = []\n',
            "plans.free.rpm",
            "at least 1",
        ),
        (
            'default = "free"\n[plans.free]\nrpm = 1\nconcurrent = 1\ndaily = 1\ntiers = ["gold"]\n',
            "plans.free.tiers",
            "not one of",
        ),
        ('default = "free"\n[plans.free]\nrpm = 1\nconcurrent = 1\ntiers = []\n', "plans.free.daily", "is required"),
        (
            'default = "free"\n[plans.free]\nrpm = 1\nconcurrent = 1\ndaily = 1\ntiers = []\nrps = 3\n',
            "plans.free.rps",
            "unknown key",
        ),
    ],
)
def test_plans_toml_errors(tmp_path: Path, plans: str, key: str, words: str) -> None:
    (tmp_path / "plans.toml").write_text(plans)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, UP), env={})
    assert (caught.value.key, caught.value.file.endswith("plans.toml")) == (key, True)
    assert words in caught.value.problem


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ('[limits]\non_limiter_failure = "maybe"\n', "limits.on_limiter_failure", '"open"'),
        ('[ip_block]\nallow = ["not-an-ip"]\n', "ip_block.allow", "CIDR"),
        ("[ip_block]\nmax_failures = 0\n", "ip_block.max_failures", "at least 1"),
    ],
)
def test_limits_and_ip_block_errors(tmp_path: Path, section: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, UP + section), env={})
    assert caught.value.key == key and words in caught.value.problem


@pytest.mark.parametrize(
    ("value", "found"),
    [('"https://gw.example.com/"', "https://gw.example.com"), ('"http://10.0.0.5:8080/v1"', "http://10.0.0.5:8080")],
)
def test_public_url(tmp_path, value: str, found: str) -> None:
    assert load_config(write(tmp_path, f"[server]\npublic_url = {value}\n" + UP), env={}).server.public_url == found


@pytest.mark.parametrize("value", ['"gw.example.com"', '"ftp://gw"', '"https://gw/?x=1"'])
def test_public_url_must_be_an_http_url(tmp_path, value: str) -> None:
    with pytest.raises(ConfigError, match="public_url"):
        load_config(write(tmp_path, f"[server]\npublic_url = {value}\n" + UP), env={})


PAYMENTS = """
[payments]
bonus = [{ from = 50, percent = 10 }, { from = 200, percent = "25" }]
min_credits = 2
max_credits = 500.5
invoice_ttl_minutes = 30

[payments.providers.bank]
kind = "vietqr"
bank_bin = { env = "BANK_BIN", default = "970436" }
webhook_key = "env:SEPAY_KEY"
"""


def test_payments_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, UP + PAYMENTS), env={"SEPAY_KEY": "s3cret", "BANK_BIN": "970422"})
    p = config.payments
    assert p.bonus == ((50_000_000, "10"), (200_000_000, "25"))
    assert (p.min_credits, p.max_credits, p.invoice_ttl_s) == (2_000_000, 500_500_000, 1800.0)
    bank = p.providers["bank"]
    assert (bank.kind, bank.options["bank_bin"], bank.secret("webhook_key")) == ("vietqr", "970422", "s3cret")
    assert "s3cret" not in str(config.redacted())
    assert load_config(write(tmp_path, UP), env={}).payments.providers == {}


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("[payments]\nbonus = [{ from = 50 }]\n", "payments.bonus[0]: write { from = 50, percent = 10 }"),
        (
            "[payments]\nbonus = [{ from = 50, percent = 120 }]\n",
            "payments.bonus[0]: a percentage is between 0 and 100",
        ),
        (
            "[payments]\nbonus = [{ from = 200, percent = 25 }, { from = 50, percent = 10 }]\n",
            "payments.bonus: steps go from the smallest amount to the largest",
        ),
        ("[payments]\nmin_credits = 0\n", "payments.min_credits: must be more than 0"),
        ("[payments]\nmin_credits = 0.1234567\n", "payments.min_credits: 0.1234567 has more than six decimals"),
        ("[payments]\nmin_credits = 10\nmax_credits = 5\n", "payments.min_credits: must be more than 0 and at most"),
        ("[payments]\nbonus_ladder = []\n", "payments.bonus_ladder: unknown key"),
        ('[payments.providers.bank]\nbank_bin = "970436"\n', "payments.providers.bank.kind: is required"),
    ],
)
def test_payments_config_errors(tmp_path: Path, table: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(write(tmp_path, UP + table), env={})


async def test_an_unknown_payment_kind_stops_the_start(tmp_path: Path, aiohttp_server) -> None:
    from izzi_proxy.app import create_app

    storage = f'[storage]\ndatabase_url = "sqlite:///{tmp_path}/ledger.sqlite3"\n'
    config = load_config(write(tmp_path, storage + UP + '[payments.providers.x]\nkind = "paypal"\n'), env={})
    with pytest.raises(ConfigError, match=r"payments.providers.x.kind: no payment plugin of kind 'paypal' is installed; "
                       r"installed: cryptomus, lolzteam, vietqr"):  # fmt: skip
        await aiohttp_server(create_app(config))


async def test_the_bundled_payment_examples_work(tmp_path: Path) -> None:
    """The commented [payments.providers.*] tables of the bundled izzi.toml, uncommented, load
    and their plugins accept them."""
    import aiohttp

    from izzi_proxy.payments import load_kind

    text = DEFAULT_CONFIG.read_text()
    head, payments = text.split("\n[payments]\n")
    uncommented = re.sub(r"^# (\[payments\.providers\.\w+\]|\w+ = .*)$", r"\1", payments, flags=re.M)
    (tmp_path / "izzi.toml").write_text(head + "\n[payments]\n" + uncommented)
    for name in ("models.toml", "plans.toml"):
        (tmp_path / name).write_text((DEFAULT_CONFIG.parent / name).read_text())
    env = {"IZZI_BANK_ACCOUNT": "0123499999", "IZZI_SEPAY_WEBHOOK_KEY": "k", "IZZI_CRYPTOMUS_MERCHANT": "m-uuid",
           "IZZI_CRYPTOMUS_PAYMENT_KEY": "p"}  # fmt: skip
    config = load_config(tmp_path / "izzi.toml", env=env)
    assert set(config.payments.providers) == {"bank", "crypto", "lolz"}
    async with aiohttp.ClientSession() as session:
        for pc in config.payments.providers.values():
            assert load_kind(pc).from_config(pc, session).kind == pc.kind
