"""What the gateway writes about others' text: secrets masked, control characters escaped.

``mask_secrets`` hides anything shaped like a credential (vendor key prefixes, bearer
tokens, ``api_key=…`` pairs, long opaque tokens) in text that came from elsewhere: an
upstream's error message before a client reads it, every log line before it is written.
``SafeFormatter`` writes each log record as one line: control and line-separator
characters in any field (a request path, a header, an exception's text) are escaped, and
a traceback's lines are indented under their record, so nothing a client sends can forge
a line of the log.
"""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(
    r"""
      \b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}        # OpenAI, Anthropic (sk-ant-…), OpenRouter (sk-or-…)
    | \b(?:xai|csk|gsk|izzi)[-_][A-Za-z0-9_\-]{8,}  # xAI, Cerebras, Groq, this gateway's own
    | \bAIza[0-9A-Za-z_\-]{20,}                # Google
    | (?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}
    | (?i:\b(?:api[_-]?key|access[_-]?token|token|secret|password)["']?\s*[:=]\s*["']?)[^\s"',;&]{6,}
    | \b[A-Za-z0-9_\-]{40,}                    # any long opaque token
    """,
    re.VERBOSE,
)
_VISIBLE = 4


def _hide(found: re.Match[str]) -> str:
    text = found.group()
    split = max(text.rfind(" "), text.rfind("="), text.rfind(":"), text.rfind('"'), text.rfind("'"))
    head, secret = (text[: split + 1], text[split + 1 :]) if split >= 0 else ("", text)
    return f"{head}{secret[:_VISIBLE]}…(masked)"


def mask_secrets(text: str) -> str:
    return _SECRET.sub(_hide, text)


_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85", 0x2028: "\\u2028", 0x2029: "\\u2029",
}  # fmt: skip


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


class SafeFormatter(logging.Formatter):
    """One line per record, secrets masked and control characters escaped; a traceback
    follows on lines of its own, each indented with ``  | ``."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = escape_controls(mask_secrets(super().format(record)))
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for block in details:
            for part in block.splitlines():
                line += "\n  | " + escape_controls(mask_secrets(part))
        return line
