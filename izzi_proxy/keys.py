"""Every typed key the app and requests carry state under (no module-level globals)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import ClientSession, web

if TYPE_CHECKING:
    from izzi_proxy.billing import Bill, Billing
    from izzi_proxy.config import Config
    from izzi_proxy.dashboard.sessions import Session, Sessions
    from izzi_proxy.ledger import ApiKey, Ledger, UsageRecord
    from izzi_proxy.ledger.writer import UsageWriter
    from izzi_proxy.limiter import Limiter
    from izzi_proxy.limiter.leases import LeaseKeeper
    from izzi_proxy.metrics import Metrics
    from izzi_proxy.payments.flow import Payments
    from izzi_proxy.router import Router


@dataclass(slots=True)
class Load:
    """What this process serves right now (the capacity and body middlewares keep it)."""

    requests: int = 0
    body_bytes: int = 0
    # bodies being waited for (their deadlines), ended at once when the process stops: aiohttp
    # reads nothing more from a connection once its graceful shutdown has begun
    body_waits: set[asyncio.Timeout] = field(default_factory=set)
    stopping: bool = False
    draining: bool = False  # the process is about to stop: each answer closes its connection
    drained_s: float = 0.0  # how long it drained: counted in shutdown_timeout_s


# On the app
CONFIG: web.AppKey[Config] = web.AppKey("izzi.config")
LEDGER: web.AppKey[Ledger] = web.AppKey("izzi.ledger")
SESSION: web.AppKey[ClientSession] = web.AppKey("izzi.session")
ROUTER: web.AppKey[Router] = web.AppKey("izzi.router")
USAGE_WRITER: web.AppKey[UsageWriter] = web.AppKey("izzi.usage_writer")
STREAMS: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("izzi.streams")
METRICS: web.AppKey[Metrics] = web.AppKey("izzi.metrics")
LIMITER: web.AppKey[Limiter] = web.AppKey("izzi.limiter")
LEASES: web.AppKey[LeaseKeeper] = web.AppKey("izzi.leases")
BLOCKED_IPS: web.AppKey[dict[str, float]] = web.AppKey("izzi.blocked_ips")  # ip -> blocked until (epoch s)
BILLING: web.AppKey[Billing] = web.AppKey("izzi.billing")
LOAD: web.AppKey[Load] = web.AppKey("izzi.load")  # what is in flight, for the gateway-wide caps
PAYMENTS: web.AppKey[Payments] = web.AppKey("izzi.payments")
SESSIONS: web.AppKey[Sessions] = web.AppKey("izzi.sessions")  # the dashboard's sign-ins
RECENT_ERRORS: web.AppKey[deque[dict[str, object]]] = web.AppKey("izzi.recent_errors")  # this process's last errors

# On each request
REQUEST_ID: web.RequestKey[str] = web.RequestKey("izzi.request_id")
API_KEY: web.RequestKey[ApiKey] = web.RequestKey("izzi.api_key")
RECORD: web.RequestKey[UsageRecord] = web.RequestKey("izzi.usage_record")
CLIENT_IP: web.RequestKey[str] = web.RequestKey("izzi.client_ip")  # unset for allow-listed IPs
RATE_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("izzi.rate_headers")
BILL: web.RequestKey[Bill] = web.RequestKey("izzi.bill")  # a generation's hold (handlers.generate)
COST_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("izzi.cost_headers")  # once settled
BODY: web.RequestKey[bytes] = web.RequestKey("izzi.body")  # read by the body middleware
DASHBOARD_SESSION: web.RequestKey[Session] = web.RequestKey("izzi.dashboard_session")  # a signed-in page's
