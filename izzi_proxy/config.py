"""Load ``izzi.toml`` into frozen dataclasses (and, through ``catalog_config``, the catalog
it names). All validation is here and in those two modules.

A wrong config is refused at start with a :class:`ConfigError` that names the file, the
key and the fix. Secrets are never written in a config file: a key is referenced as
``"env:NAME"`` (or ``{ env = "NAME" }``) and read from the environment; any value may
be taken from the environment with a default: ``{ env = "NAME", default = "..." }``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from izzi_proxy.catalog import TIERS, Catalog
from izzi_proxy.catalog_config import load_catalog
from izzi_proxy.config_reader import ConfigError, Reader, Secret, read_toml, table_of
from izzi_proxy.payments import PaymentConfig
from izzi_proxy.pricing import MICRO, AmountError, percent_of, to_micro

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "izzi.toml"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 32 * 1024 * 1024
    body_timeout_s: float = 30.0  # a request's body must have arrived within this
    max_body_bytes_in_flight: int = 128 * 1024 * 1024  # bodies held at once, all requests together
    max_requests_in_flight: int = 1000  # requests being served at once (a stream until its end)
    keepalive_timeout_s: float = 15.0  # an idle client connection is closed after this
    shutdown_timeout_s: float = 30.0
    log_level: str = "info"
    log_format: str = "text"  # text: one line per record; json: one JSON object per line
    metrics: str = "admin"  # who may scrape GET /metrics: admin (the admin token), public, off
    public_url: str | None = None  # the gateway's URL as clients reach it (GET /configure.py fills it in)
    dashboard: bool = True  # the web dashboard at /dashboard
    dashboard_session_hours: float = 12.0  # a dashboard sign-in lasts this long


@dataclass(frozen=True, slots=True)
class StorageConfig:
    database_url: str = "sqlite:///data/izzi.sqlite3"
    limiter_url: str = "memory://"
    limiter_pool_size: int = 64  # connections to the shared limiter, per process
    limiter_pool_timeout_s: float = 1.0  # how long a call waits for a free one
    key_cache_s: float = 10.0
    responses_retention_days: float = 30.0  # stored Responses answers; 0 keeps them forever


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    kind: str
    base_url: str | None = None
    api_keys: tuple[Secret, ...] = ()  # ``api_key``, or a pool of them (``api_keys``)
    connect_timeout_s: float = 10.0
    first_byte_timeout_s: float = 300.0
    idle_timeout_s: float = 300.0
    extra_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "izzi.toml"

    @property
    def api_key(self) -> Secret | None:
        return self.api_keys[0] if self.api_keys else None

    def key_values(self) -> tuple[str, ...]:
        """The keys whose variables are set (a pool may have some unset)."""
        return tuple(k.value for k in self.api_keys if k.value)

    def missing_keys(self) -> str | None:
        """Why the upstream cannot be used for want of a key, or None."""
        if self.api_keys and not self.key_values():
            return f"set {' or '.join(k.env for k in self.api_keys)} to use it"
        return None


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How hard a request tries before it fails, and how upstreams' health is judged."""

    max_attempts: int = 4  # upstream calls per request, first one included
    failover_budget_s: float = 60.0  # no further attempt starts after this long
    breaker_failures: int = 5  # consecutive failures that open an upstream's breaker
    breaker_open_s: float = 30.0  # an open breaker lets a probe through after this
    key_cooldown_s: float = 30.0  # a key's rest after a 429 that names no Retry-After


LIMIT_NAMES = ("rpm", "concurrent", "daily")


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    rpm: int
    concurrent: int
    daily: int
    tiers: frozenset[str]
    credits_per_5h: float | None = None
    price_usd_month: float | None = None
    count_tokens_rpm: int = 0  # count_tokens calls per minute, apart from rpm (0: twice rpm)

    @property
    def count_tokens_per_minute(self) -> int:
        return self.count_tokens_rpm or 2 * self.rpm


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    plans: Mapping[str, Plan]
    default_plan: str
    on_limiter_failure: str = "open"  # open: admit and say so in a header; closed: 503
    lease_ttl_s: float = 60.0  # a concurrency lease outlives a dead process this long


@dataclass(frozen=True, slots=True)
class BillingConfig:
    enabled: bool = True  # off: nothing is held or charged; records keep tokens, with cost 0
    default_max_output_tokens: int = 4096  # the hold's output for a request that names no maximum
    checkpoint_s: float = 10.0  # open holds' progress is saved, and expired holds settled, this often
    hold_ttl_s: float = 120.0  # a hold not checkpointed for this long (its process died) is settled


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    """Top-ups through payment providers (``payments/``)."""

    providers: Mapping[str, PaymentConfig] = field(default_factory=lambda: MappingProxyType({}))
    bonus: tuple[tuple[int, str], ...] = ()  # (from µcr paid, percent), ascending: the highest step reached applies
    invoice_ttl_s: float = 3600.0  # an unpaid top-up expires after this (unless the provider says sooner)
    min_credits: int = 1 * MICRO  # the smallest top-up a user may start
    max_credits: int = 10_000 * MICRO  # the largest


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class IPBlockConfig:
    max_failures: int = 10  # failed authentications from one IP within window_s...
    window_s: float = 600.0
    block_s: float = 600.0  # ...block it this long
    allow: tuple[Network, ...] = ()  # never blocked
    deny: tuple[Network, ...] = ()  # always refused
    trusted_proxies: tuple[Network, ...] = ()  # whose X-Forwarded-For is believed


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    storage: StorageConfig
    upstreams: Mapping[str, UpstreamConfig]
    catalog: Catalog
    limits: LimitsConfig
    ip_block: IPBlockConfig
    billing: BillingConfig = BillingConfig()
    routing: RoutingConfig = RoutingConfig()
    path: Path | None = None
    payments: PaymentsConfig = PaymentsConfig()

    def with_mock_upstreams(self) -> Config:
        """Every upstream replaced by the in-process mock: try the gateway with no account."""
        template = self.upstreams.get("mock")
        options = template.options if template is not None and template.kind == "mock" else {}
        mocked = {
            name: UpstreamConfig(name=name, kind="mock", options=options, source=up.source)
            for name, up in self.upstreams.items()
        }
        return dataclasses.replace(self, upstreams=MappingProxyType(mocked))

    def redacted(self) -> dict[str, Any]:
        """The resolved config as plain data, every secret shown only as its variable name."""

        def plain(value: Any) -> Any:
            if isinstance(value, Secret):
                return str(value)
            if dataclasses.is_dataclass(value):
                return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            if isinstance(value, frozenset):
                return sorted(value)
            if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network | Path):
                return str(value)
            return value

        return {
            "server": plain(self.server),
            "storage": plain(self.storage),
            "upstreams": plain(self.upstreams),
            "limits": plain(self.limits),
            "ip_block": plain(self.ip_block),
            "billing": plain(self.billing),
            "payments": plain(self.payments),
            "models": {entry.id: plain(entry) for entry in self.catalog},
        }


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``izzi.toml`` and the catalog it points at (``models.toml`` beside it by default)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    env = os.environ if env is None else env
    doc = read_toml(path)

    top = Reader(path, "", doc, env)
    for name in ("server", "storage", "upstreams", "catalog", "limits", "ip_block", "billing", "routing", "payments"):
        table_of(path, name, top.raw(name))
    top.reject_unknown()

    server = _server(Reader(path, "server", table_of(path, "server", doc.get("server")), env))
    storage = _storage(Reader(path, "storage", table_of(path, "storage", doc.get("storage")), env))

    upstreams: dict[str, UpstreamConfig] = {}
    for name, table in table_of(path, "upstreams", doc.get("upstreams")).items():
        key = f"upstreams.{name}"
        upstreams[name] = _upstream(name, Reader(path, key, table_of(path, key, table), env))
    if not upstreams:
        raise ConfigError(path, "upstreams", "define at least one upstream")

    cat = Reader(path, "catalog", table_of(path, "catalog", doc.get("catalog")), env)
    models_path = path.parent / cat.get("models", str, "models.toml")
    cat.reject_unknown()
    catalog = load_catalog(models_path, upstreams)
    limits = _limits(path, Reader(path, "limits", table_of(path, "limits", doc.get("limits")), env))
    ip_block = _ip_block(Reader(path, "ip_block", table_of(path, "ip_block", doc.get("ip_block")), env))
    billing = _billing(Reader(path, "billing", table_of(path, "billing", doc.get("billing")), env))
    routing = _routing(Reader(path, "routing", table_of(path, "routing", doc.get("routing")), env))
    payments = _payments(Reader(path, "payments", table_of(path, "payments", doc.get("payments")), env))
    return Config(server, storage, MappingProxyType(upstreams), catalog, limits, ip_block, billing, routing, path,
                  payments)  # fmt: skip


def _payments(r: Reader) -> PaymentsConfig:
    d = PaymentsConfig()
    steps = []
    for i, step in enumerate(r.get("bonus", list, [])):
        if not isinstance(step, Mapping) or set(step) != {"from", "percent"}:
            raise r.error(f"bonus[{i}]", "write { from = 50, percent = 10 } (credits paid, percent added)")
        try:
            steps.append((to_micro(step["from"]), str(step["percent"])))
            percent_of(MICRO, str(step["percent"]))
        except AmountError as err:
            raise r.error(f"bonus[{i}]", str(err)) from None
    if [s for s, _ in steps] != sorted({s for s, _ in steps}):
        raise r.error("bonus", "steps go from the smallest amount to the largest, each amount once")
    bounds = []
    for name, default in (("min_credits", d.min_credits), ("max_credits", d.max_credits)):
        try:
            bounds.append(to_micro(r.get(name, (int, float), default / MICRO)))
        except AmountError as err:
            raise r.error(name, str(err)) from None
    low, high = bounds
    if not 0 < low <= high:
        raise r.error("min_credits", f"must be more than 0 and at most max_credits ({high / MICRO:g})")
    providers = {}
    table = r.sub("providers")
    for name in table.table:
        sub = table.sub(name)
        kind = sub.required("kind", str)
        options = {}
        for key, value in sub.rest().items():
            is_secret = isinstance(value, str) and value.startswith("env:")
            options[key] = sub.secret(key) if is_secret else sub.raw(key)
        providers[name] = PaymentConfig(name, kind, MappingProxyType(options), r.file)
    config = PaymentsConfig(
        providers=MappingProxyType(providers),
        bonus=tuple(steps),
        invoice_ttl_s=r.positive("invoice_ttl_minutes", d.invoice_ttl_s / 60) * 60,
        min_credits=low,
        max_credits=high,
    )
    r.reject_unknown()
    return config


def _billing(r: Reader) -> BillingConfig:
    d = BillingConfig()
    enabled = r.get("enabled", bool, d.enabled)
    cap = r.get("default_max_output_tokens", int, d.default_max_output_tokens)
    if cap < 1:
        raise r.error("default_max_output_tokens", "must be at least 1 token")
    config = BillingConfig(
        enabled=enabled,
        default_max_output_tokens=cap,
        checkpoint_s=r.positive("checkpoint_s", d.checkpoint_s),
        hold_ttl_s=r.positive("hold_ttl_s", d.hold_ttl_s),
    )
    if config.hold_ttl_s < 2 * config.checkpoint_s:
        raise r.error("hold_ttl_s", f"must be at least twice checkpoint_s ({config.checkpoint_s} s): a live "
                      "process's holds would expire between two checkpoints")  # fmt: skip
    r.reject_unknown()
    return config


def _limits(path: Path, r: Reader) -> LimitsConfig:
    named = r.get("plans", str)
    plans_path = path.parent / (named or "plans.toml")
    if named is None and not plans_path.exists():
        plans_path = DEFAULT_CONFIG.parent / "plans.toml"  # the bundled plans
    policy = r.get("on_limiter_failure", str, "open")
    if policy not in ("open", "closed"):
        raise r.error("on_limiter_failure", 'must be "open" (admit, with a header saying so) or "closed" (503)')
    lease = r.positive("lease_ttl_s", 60.0)
    r.reject_unknown()
    plans, default = load_plans(plans_path)
    return LimitsConfig(plans, default, policy, lease)


def load_plans(path: Path) -> tuple[Mapping[str, Plan], str]:
    doc = read_toml(path)
    top = Reader(path, "", doc, {})
    default = top.required("default", str)
    tables = table_of(path, "plans", top.raw("plans"))
    top.reject_unknown()
    plans = {}
    for plan_id, table in tables.items():
        r = Reader(path, f"plans.{plan_id}", table_of(path, f"plans.{plan_id}", table), {})
        limits = {name: r.required(name, int) for name in LIMIT_NAMES}
        for name, value in limits.items():
            if value < 1:
                raise r.error(name, f"must be at least 1, got {value}")
        tiers = r.required("tiers", list)
        if unknown := [t for t in tiers if t not in TIERS]:
            raise r.error("tiers", f"{unknown[0]!r} is not one of {', '.join(TIERS)}")
        credits = r.get("credits_per_5h", float)
        price = r.get("price_usd_month", float)
        counts = r.get("count_tokens_rpm", int, 0)
        if counts < 0:
            raise r.error("count_tokens_rpm", "must be 0 (twice rpm) or more")
        plans[plan_id] = Plan(plan_id, r.get("name", str, plan_id), **limits, tiers=frozenset(tiers),
                              credits_per_5h=credits, price_usd_month=price, count_tokens_rpm=counts)  # fmt: skip
        r.reject_unknown()
    if not plans:
        raise ConfigError(path, "plans", "define at least one plan")
    if default not in plans:
        raise ConfigError(path, "default", f"{default!r} is not a plan here; plans: {', '.join(plans)}")
    return MappingProxyType(plans), default


def _networks(r: Reader, name: str) -> tuple[Network, ...]:
    values = r.get(name, list, [])
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except (TypeError, ValueError) as exc:
        raise r.error(name, f"expected IP addresses or CIDR networks: {exc}") from None


def _ip_block(r: Reader) -> IPBlockConfig:
    d = IPBlockConfig()
    failures = r.get("max_failures", int, d.max_failures)
    if failures < 1:
        raise r.error("max_failures", "must be at least 1")
    config = IPBlockConfig(
        max_failures=failures,
        window_s=r.positive("window_s", d.window_s),
        block_s=r.positive("block_s", d.block_s),
        allow=_networks(r, "allow"),
        deny=_networks(r, "deny"),
        trusted_proxies=_networks(r, "trusted_proxies"),
    )
    r.reject_unknown()
    return config


def _server(r: Reader) -> ServerConfig:
    d = ServerConfig()
    port = r.get("port", int, d.port)
    if not 0 <= port <= 65535:
        raise r.error("port", f"must be 0..65535, got {port}")
    level = r.get("log_level", str, d.log_level).lower()
    if level not in ("debug", "info", "warning", "error"):
        raise r.error("log_level", "must be one of debug, info, warning, error")
    config = ServerConfig(
        host=r.get("host", str, d.host),
        port=port,
        max_body_bytes=int(r.positive("max_body_mb", d.max_body_bytes / 2**20) * 2**20),
        body_timeout_s=r.positive("body_timeout_s", d.body_timeout_s),
        max_body_bytes_in_flight=int(r.positive("max_body_mb_in_flight", d.max_body_bytes_in_flight / 2**20) * 2**20),
        max_requests_in_flight=int(r.positive("max_requests_in_flight", d.max_requests_in_flight)),
        keepalive_timeout_s=r.positive("keepalive_timeout_s", d.keepalive_timeout_s),
        shutdown_timeout_s=r.positive("shutdown_timeout_s", d.shutdown_timeout_s),
        log_level=level,
        log_format=_choice(r, "log_format", ("text", "json"), d.log_format),
        metrics=_choice(r, "metrics", ("admin", "public", "off"), d.metrics),
        public_url=_public_url(r),
        dashboard=r.get("dashboard", bool, d.dashboard),
        dashboard_session_hours=r.positive("dashboard_session_hours", d.dashboard_session_hours),
    )
    r.reject_unknown()
    return config


def _choice(r: Reader, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = r.get(name, str, default).lower()
    if value not in allowed:
        raise r.error(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _public_url(r: Reader) -> str | None:
    url = r.get("public_url", str, None)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise r.error("public_url", f"must be an http(s) URL such as https://gateway.example.com, got {url!r}")
    return url.rstrip("/").removesuffix("/v1")


def _storage(r: Reader) -> StorageConfig:
    d = StorageConfig()
    config = StorageConfig(
        database_url=r.url("database_url", d.database_url, ("sqlite", "postgresql", "postgres")),
        limiter_url=r.url("limiter_url", d.limiter_url, ("memory", "redis", "rediss")),
        limiter_pool_size=r.get("limiter_pool_size", int, d.limiter_pool_size),
        limiter_pool_timeout_s=r.positive("limiter_pool_timeout_s", d.limiter_pool_timeout_s),
        key_cache_s=r.get("key_cache_s", float, d.key_cache_s),
        responses_retention_days=r.get("responses_retention_days", float, d.responses_retention_days),
    )
    if config.responses_retention_days < 0:
        raise r.error("responses_retention_days", "must be 0 (keep forever) or more days")
    if config.key_cache_s < 0:
        raise r.error("key_cache_s", "must be 0 (no cache) or more seconds")
    if config.limiter_pool_size < 1:
        raise r.error("limiter_pool_size", "must be at least 1 connection")
    r.reject_unknown()
    return config


def _upstream(name: str, r: Reader) -> UpstreamConfig:
    d = UpstreamConfig(name=name, kind="")
    headers = r.get("extra_headers", dict, {})
    for hname, hvalue in headers.items():
        if not isinstance(hvalue, str):
            raise r.error(f"extra_headers.{hname}", "header values must be strings")
    config = UpstreamConfig(
        name=name,
        kind=r.required("kind", str),
        base_url=r.url("base_url", None, ("http", "https")),
        api_keys=_keys(r),
        connect_timeout_s=r.positive("connect_timeout_s", d.connect_timeout_s),
        first_byte_timeout_s=r.positive("first_byte_timeout_s", d.first_byte_timeout_s),
        idle_timeout_s=r.positive("idle_timeout_s", d.idle_timeout_s),
        extra_headers=MappingProxyType(dict(headers)),
        source=f"{r.file}: {r.prefix}",
    )
    # Whatever else the table holds is the plugin's to validate (Provider.from_config).
    return dataclasses.replace(config, options=MappingProxyType(r.rest()))


def _keys(r: Reader) -> tuple[Secret, ...]:
    one, pool = r.secret("api_key"), r.secrets("api_keys")
    if one is not None and pool:
        raise r.error("api_keys", "write api_key or api_keys, not both")
    return (one,) if one is not None else pool


def _routing(r: Reader) -> RoutingConfig:
    d = RoutingConfig()
    attempts = r.get("max_attempts", int, d.max_attempts)
    failures = r.get("breaker_failures", int, d.breaker_failures)
    if attempts < 1:
        raise r.error("max_attempts", "must be at least 1 (the first call)")
    if failures < 1:
        raise r.error("breaker_failures", "must be at least 1")
    config = RoutingConfig(
        max_attempts=attempts,
        failover_budget_s=r.positive("failover_budget_s", d.failover_budget_s),
        breaker_failures=failures,
        breaker_open_s=r.positive("breaker_open_s", d.breaker_open_s),
        key_cooldown_s=r.positive("key_cooldown_s", d.key_cooldown_s),
    )
    r.reject_unknown()
    return config
