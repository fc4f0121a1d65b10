"""A fake bank-notification service: transaction notifications as SePay sends them.

SePay watches a bank account and, for each transaction, posts JSON to the webhook URL it
was given with ``Authorization: Apikey <key>``; ``id`` is unique per transaction.
``sepay_notification`` builds such a body and ``push`` posts it::

    body = sepay_notification(f"chuyen tien {reference}", 260_000)
    resp = await push(session, f"{base}/payments/bank/webhook", "the-key", body)
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import aiohttp

__all__ = ["push", "sepay_notification"]

_ids = itertools.count(time.time_ns() // 1_000_000)  # unique within a run, and across runs


def sepay_notification(
    content: str, amount: int, *, transfer_type: str = "in", gateway: str = "Vietcombank",
    account_number: str = "0123499999", code: str | None = None, description: str = "",
    transaction_id: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One transaction of ``amount`` VND whose description is ``content``, with a new ``id`` unless given."""
    number = next(_ids) if transaction_id is None else transaction_id
    return {
        "id": number,
        "gateway": gateway,
        "transactionDate": time.strftime("%Y-%m-%d %H:%M:%S"),
        "accountNumber": account_number,
        "code": code,
        "content": content,
        "transferType": transfer_type,
        "transferAmount": amount,
        "accumulated": 0,
        "subAccount": None,
        "referenceCode": f"FT{number}",
        "description": description,
    }


async def push(session: aiohttp.ClientSession, url: str, key: str | None, body: Any) -> aiohttp.ClientResponse:
    """POST ``body`` (JSON; ``bytes`` are sent as they are) to ``url`` as SePay does; ``key=None``
    sends no Authorization. The answer is read, so ``.status``, ``await .json()`` and ``await .text()`` work."""
    headers = {"Authorization": f"Apikey {key}"} if key is not None else {}
    if isinstance(body, bytes):
        request = session.post(url, data=body, headers={**headers, "Content-Type": "application/json"})
    else:
        request = session.post(url, json=body, headers=headers)
    async with request as resp:
        await resp.read()
    return resp
