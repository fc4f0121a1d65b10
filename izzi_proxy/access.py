"""What an API key may do: its account's plan (with the account's overrides) gives the
limits and the model tiers; the key's own allow-list can narrow the models further."""

from __future__ import annotations

from izzi_proxy.catalog import TIERS, ModelEntry
from izzi_proxy.config import LIMIT_NAMES, LimitsConfig, Plan
from izzi_proxy.errors import ModelNotAllowed
from izzi_proxy.ledger import ApiKey
from izzi_proxy.limiter import Limits
from izzi_proxy.pricing import AmountError, credits, to_micro

CREDIT_OVERRIDES = ("credits_per_5h", "monthly_budget")  # decimal strings of credits (billing.spend_limits)
OVERRIDABLE = (*LIMIT_NAMES, "tiers", *CREDIT_OVERRIDES)


def override_value(name: str, value: object) -> object:
    """An account override, checked and normalised: whole numbers of at least 1 for the
    request limits, a list of tiers, decimal strings of credits for the money limits.
    ValueError says what is wrong."""
    if name not in OVERRIDABLE:
        raise ValueError(f"{name!r} is not one of {', '.join(OVERRIDABLE)}")
    if name == "tiers":
        tiers = [t.strip() for t in value if isinstance(t, str) and t.strip()] if isinstance(value, list) else None
        if not tiers:
            raise ValueError("tiers takes a list of tiers")
        if bad := [t for t in tiers if t not in TIERS]:
            raise ValueError(f"unknown tier {bad[0]!r}; tiers: {', '.join(TIERS)}")
        return tiers
    if name in CREDIT_OVERRIDES:
        try:
            micro = to_micro(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        except AmountError as err:
            raise ValueError(f"{name}: {err}") from None
        if micro is None or micro < 0:
            raise ValueError(f"{name} takes a number of credits of at least 0, got {value!r}")
        return credits(micro)
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return number


def plan_of(config: LimitsConfig, key: ApiKey) -> Plan:
    """The key's account's plan; an account on a plan since removed from plans.toml falls
    back to the default plan (and the log says so at start, see ``check_accounts``)."""
    return config.plans.get(key.plan) or config.plans[config.default_plan]


COUNT_TOKENS_DAILY = 10**9  # count_tokens calls are limited per minute only


def limits_for(config: LimitsConfig, key: ApiKey, limit: str = "requests") -> tuple[Plan, Limits]:
    """The plan and the limits that admit a request: the plan's own (with the account's
    overrides), or, for ``count_tokens``, its per-minute figure for those calls."""
    plan = plan_of(config, key)
    values = {name: int(key.overrides.get(name, getattr(plan, name))) for name in LIMIT_NAMES}
    if limit == "count_tokens":
        values.update(rpm=plan.count_tokens_per_minute, daily=COUNT_TOKENS_DAILY)
    return plan, Limits(**values)


def model_allowed(config: LimitsConfig, key: ApiKey, entry: ModelEntry) -> bool:
    try:
        check_model(config, key, entry)
    except ModelNotAllowed:
        return False
    return True


def check_model(config: LimitsConfig, key: ApiKey, entry: ModelEntry) -> None:
    """403 unless the plan's tiers and the key's allow-list both admit the model."""
    plan = plan_of(config, key)
    tiers = key.overrides.get("tiers") or plan.tiers
    if entry.tier not in tiers:
        raise ModelNotAllowed(
            f"The model {entry.id!r} ({entry.tier} tier) is not included in the {plan.name} plan, which "
            f"includes the {', '.join(t for t in ('maintained', 'budget', 'standard', 'premium') if t in tiers)} "
            "tier(s)",
            param="model",
        )
    if key.allow is not None and entry.id not in key.allow and f"tier:{entry.tier}" not in key.allow:
        raise ModelNotAllowed(
            f"This API key may not use the model {entry.id!r}; it is limited to {', '.join(key.allow) or 'no model'}",
            param="model",
        )
