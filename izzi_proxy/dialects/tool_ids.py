"""Tool-call ids in each client's own convention: ``toolu_…`` for Anthropic, ``call_…`` for
OpenAI (chat and Responses).

A translated id keeps its body and swaps the prefix, so it maps back to the original when
the client sends it again (``call_abc`` → ``toolu_abc`` → ``call_abc``): the upstream sees
its own ids, every turn of a conversation is written with the same bytes (so prefix
caches hit), and clients that expect their vendor's prefix get it. Anthropic allows only
``[a-zA-Z0-9_-]``; other characters become ``_``.
"""

from __future__ import annotations

import re

_NOT_ANTHROPIC = re.compile(r"[^a-zA-Z0-9_-]")


def anthropic_id(value: str) -> str:
    if value.startswith("toolu_"):
        return _NOT_ANTHROPIC.sub("_", value)
    return "toolu_" + (_NOT_ANTHROPIC.sub("_", value.removeprefix("call_")) or "unnamed")


def openai_id(value: str) -> str:
    if value.startswith("call_"):
        return value
    return "call_" + (value.removeprefix("toolu_") or "unnamed")
