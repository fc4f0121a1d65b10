"""Fake upstreams, importable by the gateway's tests, plugin packages' tests and scripts.

``openai`` answers like OpenAI's chat completions API and (``responses``) its Responses API,
``anthropic`` like Anthropic's Messages API, ``gemini`` like Google's Gemini API. All pick
a scenario from the model name (TensorZero's dummy provider) and record every request they receive under ``RECEIVED``.
"""

from izzi_proxy.testing.anthropic import MessageScript, fake_anthropic_app, sign_thinking
from izzi_proxy.testing.gemini import GeminiScript, fake_gemini_app
from izzi_proxy.testing.openai import DISCONNECTS, RECEIVED, ChatScript, Received, fake_openai_app
from izzi_proxy.testing.responses import RESPONSES, ResponseScript, responses_handlers, sign_reasoning

__all__ = [
    "DISCONNECTS",
    "RECEIVED",
    "RESPONSES",
    "ChatScript",
    "GeminiScript",
    "MessageScript",
    "Received",
    "ResponseScript",
    "fake_anthropic_app",
    "fake_gemini_app",
    "fake_openai_app",
    "responses_handlers",
    "sign_reasoning",
    "sign_thinking",
]
