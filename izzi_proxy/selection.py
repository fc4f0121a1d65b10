"""What a request needs of a model, and how a model such as ``auto`` picks one.

**Context.** A request whose input surely exceeds the model's window (``context`` in
``models.toml``) is refused with 400 ``context_length_exceeded`` before any upstream is
asked. The check is cheap for the usual request (the hold's size estimate is under the
window), and counts carefully only when that estimate is over it.

**Selection.** A catalog entry with a ``select`` table is served by another model, picked
per request among its candidates (``select.models``, else every model of ``select.tiers``,
else of the caller's plan), keeping those that:

- the caller's plan and key may use;
- have an upstream that can be tried now (no open breaker, a key not resting);
- fit the request: its input in their window, and its needs: tools, images, thinking.

Of those, ``rule = "cheapest"`` takes the one whose price for this request (its input
estimate and its ``max_tokens``) is lowest, the candidates' order breaking ties;
``rule = "first"`` the first in ``select.models``' order. The answer names the model as the
client asked (``auto``); ``x-izzi-model`` and the usage record name the one that served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from izzi_proxy import canonical as c
from izzi_proxy import tokens
from izzi_proxy.catalog import Catalog, ModelEntry
from izzi_proxy.errors import InvalidRequest, UpstreamError


@dataclass(frozen=True, slots=True)
class Needs:
    input_tokens: int  # the hold's estimate (generous): what the price is reckoned on
    input_floor: int  # what the input surely is (``tokens.estimate_input_floor``): what must fit
    output_tokens: int
    tools: bool = False
    images: bool = False
    thinking: bool = False

    @classmethod
    def of(cls, req: c.Request, input_tokens: int, output_tokens: int) -> Needs:
        images = any(
            isinstance(p, c.Image) or (isinstance(p, c.ToolResult) and any(isinstance(q, c.Image) for q in p.content))
            for m in req.messages
            for p in m.parts
        )
        floor = tokens.estimate_input_floor(req)
        return cls(input_tokens, floor, output_tokens, bool(req.tools), images, req.reasoning is not None)

    def unmet(self, entry: ModelEntry) -> str | None:
        """What the model lacks for the request, or None."""
        if entry.context_window is not None and self.input_floor > entry.context_window:
            return "too short a context"
        for need, has, name in ((self.tools, entry.tools, "tools"), (self.images, entry.vision, "images"),
                                (self.thinking, entry.reasoning, "thinking")):  # fmt: skip
            if need and not has:
                return f"no {name}"
        return None


def check_context(entry: ModelEntry, estimate: int, canonical: Callable[[], c.Request]) -> None:
    """400 when the request's input surely exceeds the model's window."""
    window = entry.context_window
    if window is None or estimate <= window:
        return
    floor = tokens.estimate_input_floor(canonical())
    if floor > window:
        raise InvalidRequest(
            f"This model's maximum context length is {window} tokens, but the input is about {floor} tokens "
            f"(estimated); shorten the conversation, or use a model with a longer context",
            param="messages",
            code="context_length_exceeded",
        )


def select(
    entry: ModelEntry,
    catalog: Catalog,
    needs: Needs,
    allowed: Callable[[ModelEntry], bool],
    healthy: Callable[[ModelEntry], bool],
    plan_tiers: frozenset[str],
) -> ModelEntry:
    """The model that serves a request for ``entry`` (which has a ``select`` table)."""
    rule = entry.select
    assert rule is not None
    if rule.models:
        pool = [found for m in rule.models if (found := catalog.resolve(m)) is not None]
    else:
        tiers = set(rule.tiers or plan_tiers)
        pool = [m for m in catalog if m.tier in tiers]
    why: dict[str, int] = {}
    fit = []
    for model in pool:
        if model.select is not None:
            continue
        if not allowed(model):
            reason: str | None = "not in the plan"
        else:
            reason = needs.unmet(model) or (None if healthy(model) else "no healthy upstream")
        if reason is None:
            fit.append(model)
        else:
            why[reason] = why.get(reason, 0) + 1
    if not fit:
        story = ", ".join(f"{n} {reason}" for reason, n in why.items()) or "no candidates"
        message = f"No model can serve this request for {entry.id!r} ({story})"
        if "no healthy upstream" in why:
            raise UpstreamError(message, upstream="-")
        raise InvalidRequest(message, param="model", code="model_not_available")
    if rule.rule == "first":
        return fit[0]
    return min(fit, key=lambda m: m.prices.of(needs.input_tokens, needs.output_tokens))
