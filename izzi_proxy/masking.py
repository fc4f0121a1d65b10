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

import json
import logging
import re
import time

# (a word that must be in the lower-cased text, the pattern it guards): a pattern runs only
# where its word is, so the usual log line costs a few substring scans, not a regex each.
_RULES = tuple(
    (hint, re.compile(pattern))
    for hint, pattern in (
        ("sk-", r"\bsk-[A-Za-z0-9_\-]{8,}"),  # OpenAI, Anthropic (sk-ant-…), OpenRouter (sk-or-…)
        ("rk-", r"\brk-[A-Za-z0-9_\-]{8,}"),
        ("pk-", r"\bpk-[A-Za-z0-9_\-]{8,}"),
        ("xai", r"\bxai[-_][A-Za-z0-9_\-]{8,}"),  # xAI
        ("csk", r"\bcsk[-_][A-Za-z0-9_\-]{8,}"),  # Cerebras
        ("gsk", r"\bgsk[-_][A-Za-z0-9_\-]{8,}"),  # Groq
        ("izzi", r"\bizzi[-_][A-Za-z0-9_\-]{8,}"),  # this gateway's own (its 6-character prefixes stay)
        ("aiza", r"\bAIza[0-9A-Za-z_\-]{20,}"),  # Google
        ("bearer", r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
        ("apikey", r"(?i:\bapikey\s+)[A-Za-z0-9._~+/=\-]{8,}"),  # a bank-notification webhook's Authorization
        *((word, rf"(?i:\b{word}[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{{6,}}")
          for word in ("api_key", "api-key", "apikey", "access_token", "access-token", "token", "secret",
                       "password")),
    )
)  # fmt: skip
_LONG = re.compile(r"\b[A-Za-z0-9_\-]{40,}")  # any long opaque token
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):[^@\s/]+@")  # redis://user:PASSWORD@host
_VISIBLE = 4


def _hide(found: re.Match[str]) -> str:
    text = found.group()
    split = max(text.rfind(" "), text.rfind("="), text.rfind(":"), text.rfind('"'), text.rfind("'"))
    head, secret = (text[: split + 1], text[split + 1 :]) if split >= 0 else ("", text)
    return f"{head}{secret[:_VISIBLE]}…(masked)"


def mask_secrets(text: str) -> str:
    lower = text.lower()
    for hint, pattern in _RULES:
        if hint in lower:
            text = pattern.sub(_hide, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1:***@", text)
    return _LONG.sub(_hide, text)


def mask_key(key: str) -> str:
    """A key as an operator may see it, to tell the keys of a pool apart: its first and last
    four characters when it is long enough for that to reveal nothing useful."""
    return f"{key[:_VISIBLE]}…{key[-_VISIBLE:]}" if len(key) >= 20 else "…(masked)"


_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x85: "\\x85", 0x2028: "\\u2028", 0x2029: "\\u2029",
}  # fmt: skip


def escape_controls(text: str) -> str:
    return text if text.isprintable() else text.translate(_ESCAPES)


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


class JsonFormatter(logging.Formatter):
    converter = time.gmtime

    """One JSON object per line (``[server] log_format = "json"``): time, level, logger and
    the message with secrets masked, plus the record's ``fields`` (the access line's request
    id, account, key prefix, model, tokens, cost, latency…); a traceback under ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if hasattr(fields, "as_dict"):  # made only now, for this format (request_log.AccessFields)
            fields = fields.as_dict()
        if isinstance(fields, dict):
            line.update({k: mask_secrets(v) if isinstance(v, str) else v for k, v in fields.items()})
        if record.exc_info:
            line["exc"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)
