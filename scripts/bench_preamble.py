"""What holding a stream's preamble costs: the router reads a stream's first events with the
upstream format's own parser until its content begins (``router._hold_preamble``), also in
passthrough. Timed here alone, in process, per stream, for an OpenAI chat and an Anthropic
stream from the fake upstreams' scripts.

    .venv/bin/python scripts/bench_preamble.py [--streams N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

from izzi_proxy.providers import UpstreamReply
from izzi_proxy.router import _hold_preamble
from izzi_proxy.testing import ChatScript, MessageScript
from izzi_proxy.wires import WireFormats

HELLO = [{"role": "user", "content": "hello world"}]


async def _rest(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


async def main(streams: int) -> None:
    wires = WireFormats()
    chat = {"model": "m", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    cases = {
        "openai_chat": list(ChatScript(chat, chunks=20).frames()),
        "anthropic_messages": list(
            MessageScript({"model": "m", "max_tokens": 10, "messages": HELLO}, chunks=20).frames()
        ),
    }
    print("format              streams  us per stream")
    for name, frames in cases.items():
        started = time.perf_counter()
        for _ in range(streams):
            await _hold_preamble(UpstreamReply(200, {}, frames[0], _rest(frames[1:])), wires[name], "up")
        print(f"{name:<18}  {streams:>7}  {(time.perf_counter() - started) / streams * 1e6:13.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20000)
    asyncio.run(main(parser.parse_args().streams))
