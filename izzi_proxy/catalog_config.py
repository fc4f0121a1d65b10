"""Load ``models.toml``: the catalog's entries, routes, prices, selections and families."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from izzi_proxy.catalog import TIERS, WIRE_SHORT_NAMES, Catalog, ModelEntry, Route, Selection
from izzi_proxy.config_reader import ConfigError, Reader, read_toml, table_of
from izzi_proxy.pricing import MICRO, Prices

if TYPE_CHECKING:
    from izzi_proxy.config import UpstreamConfig


def load_catalog(path: Path, upstreams: Mapping[str, UpstreamConfig]) -> Catalog:
    doc = read_toml(path)
    models = table_of(path, "models", doc.get("models"))
    if not models:
        raise ConfigError(path, "models", "the catalog lists no model")
    extra = set(doc) - {"models", "families", "pricing"}
    if extra:
        raise ConfigError(
            path, sorted(extra)[0], "unknown key; the file holds [models.<id>] tables, [families] and [pricing]"
        )
    ratios = _cache_ratios(Reader(path, "pricing", table_of(path, "pricing", doc.get("pricing")), {}))
    entries, seen_aliases = [], {}
    for model_id, table in models.items():
        key = f'models."{model_id}"'
        r = Reader(path, key, table_of(path, key, table), {})
        entry = _model(model_id, r, upstreams, ratios)
        for alias in entry.aliases:
            if alias in models or alias in seen_aliases:
                owner = alias if alias in models else seen_aliases[alias]
                raise r.error("aliases", f"alias {alias!r} is already taken by {owner!r}")
            seen_aliases[alias] = model_id
        entries.append(entry)
    for entry in entries:
        if entry.select is not None and (unknown := [m for m in entry.select.models if m not in models]):
            raise ConfigError(path, f'models."{entry.id}".select.models', f"{unknown[0]!r} is not in the catalog")
    return Catalog(entries, _families(path, table_of(path, "families", doc.get("families")), models))


def _families(path: Path, table: Mapping[str, Any], models: Mapping[str, Any]) -> dict[str, str]:
    for pattern, target in table.items():
        key = f'families."{pattern}"'
        if "*" not in pattern and "?" not in pattern and "[" not in pattern:
            raise ConfigError(path, key, 'a family is a pattern such as "claude-opus-*"; name one model with aliases')
        if not isinstance(target, str) or target not in models:
            raise ConfigError(path, key, f"{target!r} is not a model id in this catalog")
    return dict(table)


CACHE_RATIOS = {"cache_read": Decimal("0.1"), "cache_write": Decimal("1.25")}  # of the input price


def _cache_ratios(r: Reader) -> dict[str, Decimal]:
    """``[pricing]``: what cached input costs, as a share of a model's input price, where the
    model names no price of its own (Anthropic's: reads 0.1, 5-minute writes 1.25)."""
    ratios = {}
    for name, default in CACHE_RATIOS.items():
        value = r.get(f"{name}_ratio", float, float(default))
        if value < 0:
            raise r.error(f"{name}_ratio", "cannot be negative")
        ratios[name] = Decimal(str(value))
    r.reject_unknown()
    return ratios


def _prices(r: Reader, ratios: Mapping[str, Decimal]) -> Prices:
    usd: dict[str, Decimal] = {}
    for name in ("input", "output"):
        usd[name] = Decimal(str(r.required(name, float)))
    for name in ("cache_read", "cache_write"):
        price = r.get(name, float)
        usd[name] = Decimal(str(price)) if price is not None else usd["input"] * ratios[name]
    for name, price in usd.items():
        if price < 0:
            raise r.error(name, "a price cannot be negative")
        if price * MICRO != (price * MICRO).to_integral_value() and name in ("input", "output"):
            raise r.error(name, f"{price} has more than six decimals")
    return Prices(
        *(
            int((usd[n] * MICRO).to_integral_value(ROUND_HALF_UP))
            for n in ("input", "output", "cache_read", "cache_write")
        )
    )


def _routes(r: Reader) -> list[Any]:
    raw = r.required("routes", list)
    if not raw:
        raise r.error("routes", "list at least one route (or give a select table)")
    return raw


def _route(r: Reader, i: int, spec: Any, upstreams: Mapping[str, UpstreamConfig]) -> Route:
    """``"<upstream>:<model>"``, or ``{ route = "<upstream>:<model>", wire = "responses" }``."""
    where, wire = f"routes[{i}]", None
    if isinstance(spec, Mapping):
        sub = Reader(r.file, r.key(where), spec, r.env)
        spec, wire = sub.required("route", str), sub.get("wire", str)
        sub.reject_unknown()
        wire = WIRE_SHORT_NAMES.get(wire, wire) if wire else None
    upstream, sep, upstream_model = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not upstream or not upstream_model:
        raise r.error(where, f'write "<upstream>:<upstream model>" or {{ route = "…", wire = "…" }}, got {spec!r}')
    if upstream not in upstreams:
        raise r.error(where, f"unknown upstream {upstream!r}; izzi.toml defines {', '.join(sorted(upstreams))}")
    return Route(upstream, upstream_model, wire)


def _selection(r: Reader) -> Selection:
    rule = r.get("rule", str, "cheapest")
    if rule not in ("cheapest", "first"):
        raise r.error("rule", f"{rule!r} is not a rule; write cheapest or first")
    models, tiers = r.get("models", list, []), r.get("tiers", list, [])
    if not all(isinstance(m, str) and m for m in models):
        raise r.error("models", "must be a list of model ids")
    if bad := [t for t in tiers if t not in TIERS]:
        raise r.error("tiers", f"{bad[0]!r} is not one of {', '.join(TIERS)}")
    if rule == "first" and not models:
        raise r.error("models", "the rule first needs the models listed in order")
    r.reject_unknown()
    return Selection(rule, tuple(models), tuple(tiers))


def _model(
    model_id: str, r: Reader, upstreams: Mapping[str, UpstreamConfig], ratios: Mapping[str, Decimal]
) -> ModelEntry:
    tier = r.required("tier", str)
    if tier not in TIERS:
        raise r.error("tier", f"{tier!r} is not one of {', '.join(TIERS)}")
    select = _selection(r.sub("select")) if r.raw("select") is not None else None
    routes = [] if select is not None else [_route(r, i, spec, upstreams) for i, spec in enumerate(_routes(r))]
    aliases = r.get("aliases", list, [])
    if not all(isinstance(a, str) and a for a in aliases):
        raise r.error("aliases", "must be a list of non-empty strings")
    prices = _prices(r, ratios)
    context = r.get("context", int)
    if context is not None and context <= 0:
        raise r.error("context", "must be a positive number of tokens")
    entry = ModelEntry(
        id=model_id,
        name=r.required("name", str),
        tier=tier,
        prices=prices,
        context_window=context,
        routes=tuple(routes),
        aliases=tuple(aliases),
        owned_by=r.get("owned_by", str, "izzi"),
        reasoning=r.get("reasoning", bool, False),
        vision=r.get("vision", bool, False),
        tools=r.get("tools", bool, True),
        select=select,
    )
    r.reject_unknown()
    return entry
