"""The middleware pipeline, outermost first (see ARCHITECTURE.md).

Each module exports ``make_<name>(config) -> Middleware``; the factory validates its
options once, the closure it returns stays short. Metering settles the hold that
``handlers.generate`` places (``billing.py``). The body is read (``body``) before the rate
limits admit the request.
"""

from __future__ import annotations

from aiohttp.typedefs import Middleware

from izzi_proxy.config import Config
from izzi_proxy.middleware.auth import make_auth
from izzi_proxy.middleware.body import make_body
from izzi_proxy.middleware.capacity import make_capacity
from izzi_proxy.middleware.errors import make_errors
from izzi_proxy.middleware.ip_block import make_ip_block
from izzi_proxy.middleware.metering import make_metering
from izzi_proxy.middleware.rate_limit import make_rate_limit
from izzi_proxy.middleware.request_log import make_request_log

ORDER = (make_request_log, make_errors, make_capacity, make_ip_block, make_auth, make_body, make_rate_limit,
         make_metering)  # fmt: skip


def build(config: Config) -> list[Middleware]:
    return [make(config) for make in ORDER]
