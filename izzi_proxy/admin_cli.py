"""``izzi-proxy accounts …`` and ``izzi-proxy keys …``: the operator's admin commands.

    accounts create NAME [--plan P] [--override rpm=200 …]
    accounts list
    accounts show NAME                              plan, limits, keys, today's usage
    accounts set NAME [--plan P] [--override k=v …] [--clear-overrides]
    keys create --name N [--account A] [--plan P] [--expires-days D] [--models m1,tier:budget] [--if-none]
    keys list [--account A]
    keys revoke ID
    credits add ACCOUNT AMOUNT [--note N] [--bonus-pct P] [--idempotency-key K]
    credits show ACCOUNT                            balance, open holds, top-ups
    usage [--by day|model|key|account] [--since 7d|2026-11-01] [--account A]

Amounts are credits (1 credit = $1), with up to six decimals. Keys are printed once, at
creation; only their hash and an 11-character prefix are kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from izzi_proxy.access import OVERRIDABLE, limits_for, override_value
from izzi_proxy.catalog import TIERS
from izzi_proxy.config import Config
from izzi_proxy.ledger import SUMMARY_GROUPS, Account, IdempotencyConflict, Ledger, open_ledger
from izzi_proxy.payments import cli as payments_cli
from izzi_proxy.pricing import AmountError, credits, percent_of, to_micro


def add_commands(sub: argparse._SubParsersAction, with_config) -> None:
    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(dest="accounts_command", required=True)
    create = with_config(accounts.add_parser("create", help="create an account"))
    create.add_argument("name")
    create.add_argument("--plan", help="its plan (default: plans.toml's default)")
    create.add_argument(
        "--override", action="append", default=[], metavar="K=V", help=f"one of {', '.join(OVERRIDABLE)}"
    )
    with_config(accounts.add_parser("list", help="list accounts"))
    show = with_config(accounts.add_parser("show", help="an account's plan, limits, keys and usage today"))
    show.add_argument("name")
    update = with_config(accounts.add_parser("set", help="change an account's plan or overrides"))
    update.add_argument("name")
    update.add_argument("--plan")
    update.add_argument("--override", action="append", default=[], metavar="K=V")
    update.add_argument("--clear-overrides", action="store_true")

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = with_config(keys.add_parser("create", help="create a key and print it once"))
    create.add_argument("--name", required=True, help="a label for the key")
    create.add_argument("--account", default="default", help="account name (created if new)")
    create.add_argument("--plan", help="plan of a newly created account (default: plans.toml's default)")
    create.add_argument("--expires-days", type=float, help="the key stops working after this many days")
    create.add_argument("--models", help="comma-separated model ids and tier:<tier> entries the key may use")
    create.add_argument("--if-none", action="store_true", help="do nothing if the account already has a live key")
    listing = with_config(keys.add_parser("list", help="list keys (prefixes only)"))
    listing.add_argument("--account", help="only this account's keys")
    revoke = with_config(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id", type=int)

    money = sub.add_parser("credits", help="top up and inspect balances").add_subparsers(
        dest="credits_command", required=True
    )
    add = with_config(money.add_parser("add", help="add credits to an account (a ledger entry)"))
    add.add_argument("account")
    add.add_argument("amount", help="credits, e.g. 10 or 2.5")
    add.add_argument("--note", help="why (a payment reference, a gift)")
    add.add_argument("--bonus-pct", default="0", help="a bonus on top, in percent of the amount (e.g. 25)")
    add.add_argument("--idempotency-key", help="a key that makes repeating this top-up a no-op")
    show_credits = with_config(money.add_parser("show", help="an account's balance, open holds and top-ups"))
    show_credits.add_argument("account")

    usage = with_config(sub.add_parser("usage", help="usage and cost, grouped"))
    usage.add_argument("--by", choices=SUMMARY_GROUPS, default="day")
    usage.add_argument("--since", default="7d", help="a number of days (7d), hours (5h) or a date (2026-11-01)")
    usage.add_argument("--account", help="only this account")


class UsageError(Exception):
    pass


async def run(config: Config, args: argparse.Namespace) -> int:
    ledger = await open_ledger(config.storage.database_url)
    try:
        if args.command == "accounts":
            return await _accounts(config, ledger, args)
        if args.command == "credits":
            return await _credits(ledger, args)
        if args.command == "usage":
            return await _usage(ledger, args)
        if args.command == "payments":
            return await payments_cli.run(config, ledger, args)
        return await _keys(config, ledger, args)
    except (UsageError, AmountError, IdempotencyConflict) as exc:
        print(f"izzi-proxy: {exc}", file=sys.stderr)
        return 1
    finally:
        await ledger.aclose()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


def describe_plan(config: Config, plan_id: str, overrides: dict | None = None) -> str:
    """What an account on this plan may do, in one line (and how to get more)."""
    if plan_id not in config.limits.plans:
        return f"plan {plan_id!r}, which plans.toml no longer has (served as {config.limits.default_plan!r})"
    plan = config.limits.plans[plan_id]
    o = overrides or {}
    tiers = [t for t in TIERS if t in (o.get("tiers") or plan.tiers)]
    text = (f"the {plan.name} plan: {o.get('rpm', plan.rpm)} requests/min, {o.get('concurrent', plan.concurrent)} "
            f"in flight, {o.get('daily', plan.daily)} per day, ")  # fmt: skip
    if len(tiers) == len(TIERS):
        return text + "every model"
    text += f"models of the {' and '.join(tiers)} tier{'s' if len(tiers) > 1 else ''} only"
    wider = [p.id for p in config.limits.plans.values() if len(p.tiers) == len(TIERS)]
    return text + (f" (for every model: --plan {', '.join(wider)})" if wider else "")


def _plan(config: Config, name: str | None) -> str:
    plan = name or config.limits.default_plan
    if plan not in config.limits.plans:
        raise UsageError(f"no plan {plan!r}; plans: {', '.join(config.limits.plans)}")
    return plan


def _overrides(pairs: list[str]) -> dict:
    overrides: dict = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--override takes K=V with K one of {', '.join(OVERRIDABLE)}, got {pair!r}")
        try:
            overrides[name] = override_value(name, value.split(",") if name == "tiers" else value)
        except ValueError as err:
            raise UsageError(f"--override: {err}") from None
    return overrides


async def _account(ledger: Ledger, name: str) -> Account:
    account = await ledger.get_account(name)
    if account is None:
        raise UsageError(f"no account named {name!r}")
    return account


async def _accounts(config: Config, ledger: Ledger, args: argparse.Namespace) -> int:
    command = args.accounts_command
    if command == "create":
        if await ledger.get_account(args.name) is not None:
            raise UsageError(f"an account named {args.name!r} exists")
        account = await ledger.create_account(args.name, _plan(config, args.plan), _overrides(args.override))
        plan = describe_plan(config, account.plan, account.overrides)
        print(f"created account {account.id} {account.name!r} on {plan}", file=sys.stderr)
    elif command == "list":
        for account in await ledger.list_accounts():
            extra = f"\toverrides {account.overrides}" if account.overrides else ""
            print(f"{account.id}\t{account.name}\t{account.plan}\tcreated {_when(account.created_at)}{extra}")
    elif command == "set":
        account = await _account(ledger, args.name)
        overrides = {} if args.clear_overrides else {**account.overrides, **_overrides(args.override)}
        plan = _plan(config, args.plan) if args.plan else None
        await ledger.update_account(account.id, plan, overrides if (args.override or args.clear_overrides) else None)
        print(f"updated account {account.name!r}", file=sys.stderr)
    else:
        account = await _account(ledger, args.name)
        keys = await ledger.list_keys(account.id)
        plan, limits = limits_for(config.limits, keys[0]) if keys else (config.limits.plans.get(account.plan), None)
        print(f"account {account.id} {account.name!r}, plan {account.plan}, created {_when(account.created_at)}")
        if limits is not None:
            print(f"limits: {limits.rpm} requests/min, {limits.concurrent} in flight, {limits.daily} per day")
        if account.overrides:
            print(f"overrides: {account.overrides}")
        balance = await ledger.balance_of(account.id)
        print(f"balance: {credits(balance.balance)} credits ({credits(balance.held)} held by requests in flight)")
        since = time.time() - (time.time() % 86400)
        used = [
            r for r in await ledger.usage_records(limit=100_000) if r.account_id == account.id and r.started_at >= since
        ]
        print(f"requests today (UTC): {len(used)}")
        for key in keys:
            print(f"  key {key.id}\t{key.prefix}…\t{key.name}\t{_key_state(key)}")
    return 0


def _key_state(key) -> str:
    if key.revoked_at:
        return f"revoked {_when(key.revoked_at)}"
    if key.expires_at and key.expires_at <= time.time():
        return f"expired {_when(key.expires_at)}"
    state = "live" + (f" until {_when(key.expires_at)}" if key.expires_at else "")
    return state + (f", models {','.join(key.allow)}" if key.allow is not None else "")


def _plan_hint(account: Account, asked: str | None) -> str:
    if asked is None or asked == account.plan:
        return ""
    return (f": account {account.name!r} is on the {account.plan} plan, not {asked}; to move it: "
            f"izzi-proxy accounts set {account.name} --plan {asked}")  # fmt: skip


async def _keys(config: Config, ledger: Ledger, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        account = await ledger.get_account(args.account)
        created = account is None
        if account is None:
            account = await ledger.create_account(args.account, _plan(config, args.plan))
        elif args.if_none and any(k.live(time.time()) for k in await ledger.list_keys(account.id)):
            print(f"account {account.name!r} already has a key, on {describe_plan(config, account.plan)}; "
                  f"none created{_plan_hint(account, args.plan)}", file=sys.stderr)  # fmt: skip
            return 0
        elif args.plan is not None and args.plan != account.plan:
            raise UsageError(f"no key created{_plan_hint(account, args.plan)}")
        allow = None
        if args.models is not None:
            allow = [m.strip() for m in args.models.split(",") if m.strip()]
            known = {e.id for e in config.catalog} | {f"tier:{t}" for t in TIERS}
            if bad := [m for m in allow if m not in known]:
                raise UsageError(f"--models: {bad[0]!r} is neither a catalog model id nor tier:<tier>")
        expires = time.time() + args.expires_days * 86400 if args.expires_days else None
        key, secret = await ledger.create_key(account.id, args.name, expires, allow)
        whose = f"the new account {account.name!r}" if created else f"account {account.name!r}"
        plan = describe_plan(config, account.plan, account.overrides)
        print(f"created key {key.id} {key.name!r} for {whose}, on {plan}; it is shown only once:", file=sys.stderr)
        print(secret)
        return 0
    if args.keys_command == "list":
        account_id = (await _account(ledger, args.account)).id if args.account else None
        for key in await ledger.list_keys(account_id):
            created = _when(key.created_at)
            print(f"{key.id}\t{key.prefix}…\t{key.account_name}\t{key.name}\t{_key_state(key)}\tcreated {created}")
        return 0
    if await ledger.revoke_key(args.id):
        print(f"revoked key {args.id}", file=sys.stderr)
        return 0
    print(f"no live key with id {args.id}", file=sys.stderr)
    return 1


async def _credits(ledger: Ledger, args: argparse.Namespace) -> int:
    account = await _account(ledger, args.account)
    if args.credits_command == "add":
        amount = to_micro(args.amount)
        if amount <= 0:
            raise UsageError(f"the amount must be more than 0, got {args.amount!r}")
        try:
            bonus = percent_of(amount, args.bonus_pct)
        except AmountError as err:
            raise UsageError(f"--bonus-pct: {err}") from None
        entry, new = await ledger.add_credits(
            account.id, amount, bonus=bonus, note=args.note, idempotency_key=args.idempotency_key
        )
        balance = await ledger.balance_of(account.id)
        what = "added" if new else "already added (same idempotency key)"
        extra = f" (a {credits(entry.bonus)} bonus included)" if entry.bonus else ""
        print(f"{what}: {credits(entry.amount)} credits to {account.name!r}{extra}; "
              f"balance {credits(balance.balance)}", file=sys.stderr)  # fmt: skip
        return 0
    balance = await ledger.balance_of(account.id)
    print(f"account {account.name!r}: balance {credits(balance.balance)}, held {credits(balance.held)} "
          f"by {balance.holds} request(s) in flight, available {credits(balance.available)}")  # fmt: skip
    for entry in await ledger.credit_entries(account.id):
        note = f"\t{entry.note}" if entry.note else ""
        print(f"  {_when(entry.created_at)}\t+{credits(entry.amount)}\t{entry.kind}{note}")
    return 0


def since_of(text: str, now: float) -> float:
    """``7d``, ``5h`` or a UTC date (``2026-11-01``) as a time."""
    try:
        if text[-1:] in ("d", "h"):
            return now - float(text[:-1]) * (86400 if text[-1] == "d" else 3600)
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise UsageError(f"--since takes 7d, 5h or a date like 2026-11-01, got {text!r}") from None


async def _usage(ledger: Ledger, args: argparse.Namespace) -> int:
    account_id = (await _account(ledger, args.account)).id if args.account else None
    rows = await ledger.usage_summary(args.by, since_of(args.since, time.time()), account_id=account_id)
    print(f"{args.by}\trequests\terrors\tinput\toutput\tcache_read\tcache_write\treasoning\tcost\tunbilled")
    for r in rows:
        print(f"{r.group}\t{r.requests}\t{r.errors}\t{r.input_tokens}\t{r.output_tokens}\t{r.cache_read_tokens}"
              f"\t{r.cache_write_tokens}\t{r.reasoning_tokens}\t{credits(r.cost)}\t{credits(r.unbilled)}")  # fmt: skip
    return 0
