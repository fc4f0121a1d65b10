"""Refuse IPs on the deny-list, and IPs blocked after too many failed authentications.

The client IP is the direct peer, or, when the peer is a configured trusted proxy, the
right-most ``X-Forwarded-For`` address that is not itself a trusted proxy. Allow-listed IPs
are never counted or blocked. A failed authentication is counted here (it comes back from
the auth middleware inside); once an IP is blocked, any key it presents gets 403
``ip_blocked``: a wrong one here, a right one in the same atomic step that checks the
rate limits (``rate_limit.py``), so a request pays no extra round trip for the check. A
block this process has learnt of is remembered in ``BLOCKED_IPS`` and refused before any
key lookup; one set by another process is learnt at the IP's next request here.
"""

from __future__ import annotations

import ipaddress
import math
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config, Network
from izzi_proxy.errors import AuthenticationFailed, IPBlocked
from izzi_proxy.keys import BLOCKED_IPS, CLIENT_IP, LIMITER
from izzi_proxy.routes import route_info


def within(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether an address (a peer's, a hop's) is in one of the networks; False if it is none."""
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: web.Request, trusted_proxies: tuple[Network, ...]) -> str:
    peer = request.remote or ""
    if not trusted_proxies or not within(peer, trusted_proxies):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        if not within(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def blocked_error(ip: str, seconds: float) -> IPBlocked:
    return IPBlocked(f"Too many failed authentications from {ip}: blocked for {math.ceil(seconds)} s",
                     retry_after_s=seconds)  # fmt: skip


def remember_block(blocked: dict[str, float], ip: str, seconds: float, max_size: int = 10_000) -> None:
    now = time.time()
    if len(blocked) >= max_size:
        for stale in [k for k, until in blocked.items() if until <= now]:
            del blocked[stale]
    if len(blocked) < max_size:
        blocked[ip] = now + seconds


async def count_failed_auth(request: web.Request, config: Config) -> float:
    """Count a failed authentication against the request's IP: the seconds it is now
    blocked for (0: not blocked, or an allow-listed IP, which is never counted)."""
    ip, cfg = request.get(CLIENT_IP), config.ip_block
    if ip is None:
        return 0.0
    blocked = await request.app[LIMITER].auth_failed(ip, time.time(), cfg.max_failures, cfg.window_s, cfg.block_s)
    if blocked:
        remember_block(request.app[BLOCKED_IPS], ip, blocked)
    return blocked


def make_ip_block(config: Config) -> Middleware:
    cfg = config.ip_block

    @web.middleware
    async def ip_block(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = route_info(request)
        if info is None or (info.public and not info.signed):
            return await handler(request)
        ip = client_ip(request, cfg.trusted_proxies)
        if within(ip, cfg.deny):
            raise IPBlocked(f"Requests from {ip} are not accepted", retry_after_s=cfg.block_s)
        if within(ip, cfg.allow):
            return await handler(request)
        now = time.time()
        if (until := request.app[BLOCKED_IPS].get(ip, 0.0)) > now:
            raise blocked_error(ip, until - now)
        request[CLIENT_IP] = ip
        try:
            return await handler(request)
        except AuthenticationFailed:
            if blocked := await count_failed_auth(request, config):
                raise blocked_error(ip, blocked) from None
            raise

    return ip_block
