"""Fake upstreams, importable by the gateway's tests, plugin packages' tests and scripts.

``openai`` answers like OpenAI's chat completions API, ``anthropic`` like Anthropic's
Messages API. Both pick a scenario from the model name (TensorZero's dummy provider) and
record every request they receive under ``RECEIVED``.
"""

from izzi_proxy.testing.anthropic import MessageScript, fake_anthropic_app, sign_thinking
from izzi_proxy.testing.openai import DISCONNECTS, RECEIVED, ChatScript, Received, fake_openai_app

__all__ = [
    "DISCONNECTS",
    "RECEIVED",
    "ChatScript",
    "MessageScript",
    "Received",
    "fake_anthropic_app",
    "fake_openai_app",
    "sign_thinking",
]
