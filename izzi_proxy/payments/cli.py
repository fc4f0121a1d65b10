"""``izzi-proxy payments …``: the operator's view of top-ups, from the command line.

    payments list [--state S] [--account A]        newest first
    payments show ID                               a payment, its notifications, its credit entries
    payments assign ID ACCOUNT                     an unmatched payment credited to an account
    payments record PROVIDER --transaction T --amount N [--reference IZ…] [--note …]
                                                   a transfer seen arriving (a Lolzteam balance)

The same flow as the webhooks and the admin API (``flow.py``): a recorded transaction is
credited once per transaction id, whatever the command is run again.
"""

from __future__ import annotations

import argparse
import sys

import aiohttp

from izzi_proxy.config import Config, ConfigError
from izzi_proxy.errors import GatewayError
from izzi_proxy.ledger import PAYMENT_STATES, Ledger, Payment
from izzi_proxy.payments import load_kind
from izzi_proxy.payments.api import details
from izzi_proxy.payments.flow import Payments
from izzi_proxy.pricing import credits


def add_commands(sub: argparse._SubParsersAction, with_config) -> None:
    payments = sub.add_parser("payments", help="top-ups paid through payment providers").add_subparsers(
        dest="payments_command", required=True
    )
    listing = with_config(payments.add_parser("list", help="payments, newest first"))
    listing.add_argument("--state", choices=PAYMENT_STATES)
    listing.add_argument("--account", help="only this account's")
    show = with_config(payments.add_parser("show", help="a payment, its notifications and credit entries"))
    show.add_argument("id")
    assign = with_config(payments.add_parser("assign", help="credit an unmatched payment to an account"))
    assign.add_argument("id")
    assign.add_argument("account")
    record = with_config(payments.add_parser("record", help="a transfer you saw arrive (e.g. a Lolzteam balance)"))
    record.add_argument("provider", help="the [payments.providers.<name>] it came through")
    record.add_argument("--transaction", required=True, help="its transaction id (once per id)")
    record.add_argument("--amount", required=True, help="credits it buys, e.g. 10 or 12.5")
    record.add_argument("--reference", help="the payment reference it came with (IZ…), if any")
    record.add_argument("--note")


def _line(p: Payment, names: dict[int, str]) -> str:
    owner = names.get(p.account_id, "-") if p.account_id is not None else "(unmatched)"
    paid = credits(p.paid) if p.paid is not None else "-"
    return (f"{p.id}\t{p.state}\t{p.provider}\t{owner}\tasked {credits(p.credits)}\tpaid {paid}\t"
            f"credited {credits(p.credited)}\t{p.amount} {p.currency}")  # fmt: skip


async def run(config: Config, ledger: Ledger, args: argparse.Namespace) -> int:
    try:
        async with aiohttp.ClientSession(trust_env=False) as session:
            providers = {}
            if args.payments_command == "record":  # only recording needs the provider (and its secrets)
                pc = config.payments.providers.get(args.provider)
                if pc is not None:
                    providers[args.provider] = load_kind(pc).from_config(pc, session)
            payments = Payments(ledger, config.payments, providers)
            return await _run(payments, ledger, args)
    except GatewayError as err:
        print(f"izzi-proxy: {err.message}", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"izzi-proxy: config error: {err}", file=sys.stderr)
        return 2


async def _run(payments: Payments, ledger: Ledger, args: argparse.Namespace) -> int:
    names = {a.id: a.name for a in await ledger.list_accounts()}
    if args.payments_command == "list":
        account_id = None
        if args.account is not None:
            account_id = next((i for i, n in names.items() if n == args.account), None)
            if account_id is None:
                print(f"izzi-proxy: no account named {args.account!r}", file=sys.stderr)
                return 1
        for p in await ledger.list_payments(account_id=account_id, state=args.state, limit=1000):
            print(_line(p, names))
        return 0
    if args.payments_command == "show":
        p = await payments.get(args.id)
        view = await details(payments, p)
        print(_line(p, names))
        for key in ("bonus", "external_id", "pay_url", "paid_by", "detail"):
            if view.get(key) not in (None, "0.000000"):
                print(f"  {key}: {view[key]}")
        for e in view["events"]:
            print(f"  event {e['event_id'] or '-'}\t{e['status']}\t{e['outcome']}\t{e['detail'] or ''}")
        for e in view["credit_entries"]:
            print(f"  credit +{e['amount']}\t{e['kind']}\t{e['idempotency_key']}")
        return 0
    if args.payments_command == "assign":
        account = await ledger.get_account(args.account)
        if account is None:
            print(f"izzi-proxy: no account named {args.account!r}", file=sys.stderr)
            return 1
        p = await payments.assign(args.id, account)
        print(f"{p.id} credited to {account.name!r}: {credits(p.credited)} credits", file=sys.stderr)
        return 0
    outcome = await payments.record(args.provider, args.transaction, args.amount, args.reference, args.note)
    what = {"applied": "credited", "unchanged": "already recorded", "unmatched": "kept as unmatched"}[outcome.outcome]
    print(f"transaction {args.transaction}: {what} ({outcome.payment_id}, {outcome.state})", file=sys.stderr)
    return 0
