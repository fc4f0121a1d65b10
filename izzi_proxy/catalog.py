"""The model catalog: what clients may ask for, what it costs, and where it is served.

Entries come from ``config/models.toml`` (parsed and validated in ``config.py``).
A client's model name resolves through, in order: the exact id, an explicit alias, the
normalisation of vendor spellings (a dated suffix ``-20250514`` or ``-2024-08-06`` dropped,
``4-5`` read as ``4.5``), so that ``claude-sonnet-4-5-20250929`` finds ``claude-sonnet-4.5``
without an alias per snapshot, and last the family rules (``claude-opus-*`` → the
operator's choice), so that the names real clients send by default (Claude Code asks for
its newest Opus) find a model. The answer still names the model as the client asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from izzi_proxy.pricing import Prices

TIERS = ("maintained", "budget", "standard", "premium")

_DATED = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")
_DASHED_VERSION = re.compile(r"(?<=\d)-(?=\d(?:\D|$))")


WIRE_SHORT_NAMES = {"chat": "openai_chat", "messages": "anthropic_messages", "responses": "openai_responses"}


@dataclass(frozen=True, slots=True)
class Route:
    """One way to serve a model: an upstream (by config name), its name for the model, and
    the wire format to speak to it when the route insists on one (``wire``)."""

    upstream: str
    model: str
    wire: str | None = None  # None: the client's format if the upstream speaks it


@dataclass(frozen=True, slots=True)
class Selection:
    """How a model such as ``auto`` picks the model that serves a request (``select``)."""

    rule: str = "cheapest"  # cheapest (for this request) | first (in the order of ``models``)
    models: tuple[str, ...] = ()  # the candidates; empty: every model of ``tiers``
    tiers: tuple[str, ...] = ()  # empty: the tiers of the caller's plan


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    name: str
    tier: str
    prices: Prices
    context_window: int | None
    routes: tuple[Route, ...]
    aliases: tuple[str, ...] = ()
    owned_by: str = "izzi"
    reasoning: bool = False  # takes a reasoning effort / thinking budget
    vision: bool = False  # reads images
    tools: bool = True  # calls tools
    select: Selection | None = None  # served by another model, picked per request (``auto``)

    def to_openai(self, created: int) -> dict:
        """The OpenAI ``Model`` object, plus our pricing, tier and context fields."""
        return {
            "id": self.id,
            "object": "model",
            "created": created,
            "owned_by": self.owned_by,
            "name": self.name,
            "tier": self.tier,
            "context_window": self.context_window,
            "pricing": {"currency": "USD", "unit": "1M tokens", **self.prices.usd()},
            "aliases": list(self.aliases),
            "reasoning": self.reasoning,
        }

    def to_anthropic(self) -> dict:
        """Anthropic's ``ModelInfo`` (release date unknown: the epoch, as its docs allow), plus
        the same pricing, tier and aliases."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.name,
            "created_at": "1970-01-01T00:00:00Z",
            "lifecycle": "active",
            "deprecated_at": None,
            "retires_at": None,
            "max_input_tokens": self.context_window,
            **{k: v for k, v in self.to_openai(0).items() if k in ("tier", "pricing", "aliases", "reasoning")},
        }

    def to_gemini(self) -> dict:
        """Gemini's ``Model`` (``models/<id>``, with the methods this gateway serves for it),
        plus the same pricing, tier and aliases."""
        return {
            "name": f"models/{self.id}",
            "baseModelId": self.id,
            "version": "izzi",
            "displayName": self.name,
            "description": f"{self.name} through Izzi Gateway ({self.tier} tier)",
            "inputTokenLimit": self.context_window,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
            "thinking": self.reasoning,
            **{k: v for k, v in self.to_openai(0).items() if k in ("tier", "pricing", "aliases")},
        }


class Catalog:
    """Models by id, with alias, vendor-spelling and family resolution."""

    def __init__(self, entries: Iterable[ModelEntry], families: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        self._families = dict(families or {})  # glob pattern -> model id, first match wins
        for entry in entries:
            self._entries[entry.id] = entry
        for entry in self._entries.values():
            for alias in entry.aliases:
                self._aliases[alias] = entry.id

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    @property
    def families(self) -> Mapping[str, str]:
        return self._families

    def resolve(self, name: str) -> ModelEntry | None:
        """The entry a client's model name means, or None."""
        found = self._lookup(name)
        if found is None:
            undated = _DATED.sub("", name)
            found = self._lookup(undated) or self._lookup(_DASHED_VERSION.sub(".", undated))
        if found is None:
            target = next((t for pattern, t in self._families.items() if fnmatchcase(name, pattern)), None)
            found = self._entries.get(target) if target is not None else None
        return found

    def _lookup(self, name: str) -> ModelEntry | None:
        entry = self._entries.get(name)
        if entry is None and (target := self._aliases.get(name)) is not None:
            entry = self._entries[target]
        return entry
