"""The provider plugin contract and the entry-point registry that finds plugins.

A provider is how the gateway speaks to one kind of upstream. Each is a separately
installed package registering a class in the ``izzi_proxy.providers`` entry-point group;
the entry-point name is the ``kind`` that ``izzi.toml`` names. The built-in ones
(``plugins/openai``, ``plugins/mock``) are plugins too.

Only the kinds that config names are imported. ``IZZI_PROVIDERS=openai,mock`` restricts
which installed plugins may load at all. An unknown kind stops the start with the list of
installed kinds; a plugin that fails to import is reported and its upstreams are marked
unavailable, and the gateway serves everything else. A provider class may bring wire
formats of its own (``wires.BringsWireFormats``): they join the registry when it loads.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from aiohttp import ClientSession

from izzi_proxy.config import Config, ConfigError, UpstreamConfig
from izzi_proxy.wires import BringsWireFormats, WireFormats

log = logging.getLogger("izzi.providers")

GROUP = "izzi_proxy.providers"


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One request to send upstream, already in the upstream's wire format."""

    wire_format: str  # "openai_chat" | "anthropic_messages" | "openai_responses"
    body: dict[str, Any]  # the JSON body; the provider encodes it
    stream: bool
    request_id: str
    headers: Mapping[str, str] = field(default_factory=dict)  # client headers meant for upstream
    api_key: str | None = None  # the key to send, picked by the router from the upstream's pool


async def _no_more() -> AsyncIterator[bytes]:
    return
    yield


@dataclass(slots=True)
class UpstreamReply:
    """A committed-to-nothing-yet answer: status and headers, and for a stream its first event.

    ``head`` holds the bytes read so far (for a stream: at least one whole event; for a
    plain answer: all of it); ``body`` yields the rest as it arrives. ``close(finished)``
    ends the exchange: ``finished`` says the stream was read to its terminal event (the
    connection may be kept for the next request once the upstream has ended its answer);
    otherwise the upstream request is cancelled if it is still running.
    """

    status: int
    headers: Mapping[str, str]
    head: bytes
    body: AsyncIterator[bytes] = field(default_factory=_no_more)
    close: Callable[[bool], Awaitable[None]] | None = None

    async def aclose(self, finished: bool = False) -> None:
        if self.close is not None:
            await self.close(finished)


class UpstreamUnavailable(Exception):
    """Raised by ``from_config`` when an upstream cannot be used as the environment stands
    (e.g. its key variable is not set). The upstream is reported and skipped, not fatal."""


@runtime_checkable
class Provider(Protocol):
    kind: ClassVar[str]
    wire_formats: frozenset[str]  # the wire formats it can send (``wires``); class or instance attribute

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        """Validate options (raise ConfigError) and build; called once at start."""

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        """Return once status and headers (and, for streams, the first event) have arrived.

        Raise ``UpstreamError`` for anything that fails before then: an error status, an
        error as the first stream event, a refused connection, a timeout.
        """

    async def aclose(self) -> None: ...


@runtime_checkable
class CountsTokens(Protocol):
    """Optional: the upstream counts a request's input tokens itself (exactly), for a body in
    its own wire format (Anthropic's Messages, Gemini's GenerateContentRequest)."""

    async def count_tokens(self, body: dict[str, Any], headers: Mapping[str, str]) -> int: ...


class Registry:
    """Installed provider classes by kind, loaded lazily from entry points."""

    def __init__(self) -> None:
        self._overrides: dict[str, type[Provider]] = {}

    def installed(self) -> dict[str, Any]:
        allow = os.environ.get("IZZI_PROVIDERS")
        allowed = {k.strip() for k in allow.split(",")} if allow else None
        found: dict[str, Any] = {
            ep.name: ep for ep in entry_points(group=GROUP) if allowed is None or ep.name in allowed
        }
        found.update(self._overrides)
        return found

    def load(self, kind: str) -> type[Provider]:
        """The class for ``kind``; KeyError if not installed, any import error as raised."""
        target = self.installed()[kind]
        return target if isinstance(target, type) else target.load()

    @contextlib.contextmanager
    def override(self, classes: Mapping[str, type[Provider]]) -> Iterator[None]:
        """Register classes as if installed, for the duration of a test."""
        saved = dict(self._overrides)
        self._overrides.update(classes)
        try:
            yield
        finally:
            self._overrides = saved


registry = Registry()


@dataclass(slots=True)
class Upstreams:
    """The providers built from config, and why any upstream is unavailable."""

    providers: dict[str, Provider]
    unavailable: dict[str, str]
    wires: WireFormats = field(default_factory=WireFormats)  # the core's and the plugins'

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()


def build_upstreams(config: Config, session: ClientSession, reg: Registry = registry) -> Upstreams:
    installed = reg.installed()
    classes: dict[str, type[Provider] | None] = {}
    built = Upstreams({}, {})
    for name, upstream in config.upstreams.items():
        if upstream.kind not in installed:
            raise ConfigError(
                config.path or "izzi.toml",
                f"upstreams.{name}.kind",
                f"no provider plugin of kind {upstream.kind!r} is installed; installed kinds: "
                f"{', '.join(sorted(installed)) or 'none'}",
            )
        if upstream.kind not in classes:
            try:
                classes[upstream.kind] = reg.load(upstream.kind)
            except Exception as exc:
                log.error("provider plugin %r failed to load: %r", upstream.kind, exc)
                classes[upstream.kind] = None
        cls = classes[upstream.kind]
        if isinstance(cls, BringsWireFormats):
            for wire in cls.wire_codecs:
                built.wires.add(wire)
        if cls is None:
            built.unavailable[name] = f"provider plugin {upstream.kind!r} failed to load"
            continue
        try:
            built.providers[name] = cls.from_config(upstream, session)
        except ConfigError:
            raise
        except UpstreamUnavailable as exc:
            log.warning("upstream %r is unavailable: %s", name, exc)
            built.unavailable[name] = str(exc)
        except Exception as exc:
            log.exception("provider plugin %r failed to start upstream %r", upstream.kind, name)
            built.unavailable[name] = f"provider plugin {upstream.kind!r} failed: {exc!r}"
    return built
