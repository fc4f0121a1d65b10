"""Every failure the gateway reports, and the only place that knows status codes.

Exception tree::

    GatewayError                    500 server_error
    ├── InvalidRequest              400 invalid_request_error
    │   ├── MethodNotAllowed        405 invalid_request_error
    │   ├── BodyTimeout             408 invalid_request_error (the body did not arrive in time)
    │   ├── Conflict                409 invalid_request_error (a taken name, a reused idempotency key)
    │   ├── RequestTooLarge         413 invalid_request_error
    │   └── WebSocketRefused        426 invalid_request_error (Responses over WebSocket: use HTTP)
    ├── AuthenticationFailed        401 authentication_error
    ├── InsufficientBalance         402 insufficient_balance (the balance less open holds cannot cover it)
    │   └── BudgetExceeded          402 budget_exceeded    (the account's monthly budget)
    ├── IPBlocked                   403 ip_blocked
    ├── ModelNotAllowed             403 permission_error
    ├── NotFound                    404 not_found
    ├── RateLimited                 429 rate_limit_error   (requests per minute, in flight)
    │   └── QuotaExceeded           429 quota_exceeded     (requests per day, the plan's credits per 5 h)
    ├── LimiterUnavailable          503 service_unavailable (shared limiter down, policy "closed")
    │   ├── LedgerUnavailable       503 service_unavailable (the ledger could not place a hold)
    │   └── Overloaded              503 service_unavailable (the gateway's own caps on what is in flight)
    ├── UpstreamError               502 upstream_error     (upstream answered with an error)
    │   ├── UpstreamRejected        400 invalid_request_error (upstream refused the request's content)
    │   └── UpstreamConnectionError 502 connection_error   (unreachable, timed out, cut off)
    ├── PaymentProviderError        502 upstream_error     (a payment provider made no invoice)
    └── ServerError                 500 server_error

A dialect renders any of them in its client's error shape; the errors middleware is
the one place that turns an exception into a response.
"""

from __future__ import annotations

import logging
import math

from izzi_proxy.masking import mask_secrets

log = logging.getLogger("izzi.upstream")


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def headers(self) -> dict[str, str]:
        """Extra response headers that belong to this error (e.g. Retry-After)."""
        return {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class MethodNotAllowed(InvalidRequest):
    status = 405


class RequestTooLarge(InvalidRequest):
    status = 413


class BodyTimeout(InvalidRequest):
    status = 408


class WebSocketRefused(InvalidRequest):
    """A WebSocket handshake where only HTTP is served. 426 is the answer on which Codex
    (``supports_websockets = true``) falls back to HTTP at once; other statuses make it
    retry the handshake first."""

    status = 426


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"


class InsufficientBalance(GatewayError):
    status = 402
    type = "insufficient_balance"


class BudgetExceeded(InsufficientBalance):
    type = "budget_exceeded"


class _RetryLater(GatewayError):
    """An error that says when to come back (``Retry-After``, in whole seconds)."""

    def __init__(self, message: str, *, retry_after_s: float, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class IPBlocked(_RetryLater):
    status = 403
    type = "ip_blocked"


class ModelNotAllowed(GatewayError):
    status = 403
    type = "permission_error"


class RateLimited(_RetryLater):
    status = 429
    type = "rate_limit_error"


class QuotaExceeded(RateLimited):
    type = "quota_exceeded"


class LimiterUnavailable(_RetryLater):
    status = 503
    type = "service_unavailable"


class LedgerUnavailable(LimiterUnavailable):
    """The ledger (balances, holds) could not be reached: nothing is admitted unpaid."""


class Overloaded(LimiterUnavailable):
    """The gateway is serving as many requests, or holding as many body bytes, as it may."""


class NotFound(GatewayError):
    status = 404
    type = "not_found"


class Conflict(InvalidRequest):
    """The request clashes with what exists (a taken name, an idempotency key reused)."""

    status = 409


class ServerError(GatewayError):
    status = 500
    type = "server_error"


class UpstreamError(GatewayError):
    """The upstream answered, with an error. Its status and message are kept in ours.

    ``retryable`` tells the router whether the next route may be tried (only ever
    before any content has reached the client).
    """

    status = 502
    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream: str,
        upstream_status: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.upstream_status = upstream_status
        self.retryable = retryable
        self.retry_after: float | None = None  # the upstream's Retry-After, in seconds
        self.attempts = 1  # upstream calls made (the router sets it)
        self.tried: tuple[str, ...] = ()  # what became of each route and call (the router sets it)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(math.ceil(self.retry_after))} if self.retry_after else {}


class PaymentProviderError(GatewayError):
    """A payment provider's service refused to make an invoice or could not be reached."""

    status = 502
    type = "upstream_error"


class UpstreamConnectionError(UpstreamError):
    """The upstream could not be reached, timed out, or broke off its answer."""

    type = "connection_error"

    def __init__(self, message: str, *, upstream: str, retryable: bool = True) -> None:
        super().__init__(message, upstream=upstream, retryable=retryable)


class UpstreamRejected(UpstreamError):
    """The upstream refused the request's content (HTTP 400, 413, 422).

    Sent to the client as a 400, not a 502: the same request would fail again, and
    OpenAI's and Anthropic's SDKs retry a 502 by themselves.
    """

    status = 400
    type = "invalid_request_error"


RETRYABLE_UPSTREAM_STATUSES = frozenset({401, 403, 408, 409, 429, 500, 502, 503, 504, 529})
REJECTED_UPSTREAM_STATUSES = frozenset({400, 413, 422})
CREDENTIAL_STATUSES = frozenset({401, 403})  # the upstream refused the operator's key, not the client


def upstream_error(
    upstream: str, status: int, message: str, kind: str | None = None, retry_after: float | None = None
) -> UpstreamError:
    """The gateway error for an upstream's error answer: its status, its error type and its
    message with anything shaped like a secret masked. When the upstream refused the
    gateway's own credentials (401, 403) the client is told only that, naming the upstream;
    the upstream's text goes to the operator's log (another route may still answer)."""
    err = _upstream_error(upstream, status, message, kind)
    err.retry_after = retry_after
    return err


def _upstream_error(upstream: str, status: int, message: str, kind: str | None) -> UpstreamError:
    if status in CREDENTIAL_STATUSES:
        log.error("upstream %r refused the gateway's credentials (HTTP %d): %s", upstream, status, message)
        return UpstreamError(
            f"Upstream {upstream!r} refused the gateway's credentials (HTTP {status}); the operator must fix its key",
            upstream=upstream, upstream_status=status, retryable=True,
        )  # fmt: skip
    told = mask_secrets(message) + (f" ({kind})" if kind else "")
    if status in REJECTED_UPSTREAM_STATUSES:
        return UpstreamRejected(
            f"Upstream {upstream!r} rejected the request (HTTP {status}): {told}",
            upstream=upstream,
            upstream_status=status,
        )
    return UpstreamError(
        f"Upstream {upstream!r} returned HTTP {status}: {told}",
        upstream=upstream,
        upstream_status=status,
        retryable=status in RETRYABLE_UPSTREAM_STATUSES,
    )
