"""The small canonical form that every dialect and wire format translates through.

So far it holds what every path needs: token usage. Messages, content parts, tools
and stream events join it with the first translating dialect (the Anthropic issue),
so that N dialects and M wire formats need N + M translators, not N x M.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    """Token usage of one upstream call.

    ``input_tokens`` counts uncached input only (Anthropic's meaning); cached input is
    in ``cache_read_tokens`` and ``cache_write_tokens``. ``output_tokens`` includes
    reasoning; ``reasoning_tokens`` says how much of it was reasoning.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.output_tokens
