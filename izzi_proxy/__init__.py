"""Izzi Gateway: a self-hosted LLM API gateway.

One API key gives access to many upstream models through the formats that clients
already speak: OpenAI Chat Completions, Anthropic Messages and OpenAI Responses, any
format with any model. Providers are plugins found through the ``izzi_proxy.providers``
entry-point group.
"""

from izzi_proxy.app import create_app
from izzi_proxy.config import Config, ConfigError, load_config
from izzi_proxy.errors import GatewayError, UpstreamError
from izzi_proxy.providers import Provider, UpstreamCall, UpstreamReply

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "GatewayError",
    "Provider",
    "UpstreamCall",
    "UpstreamError",
    "UpstreamReply",
    "__version__",
    "create_app",
    "load_config",
]
