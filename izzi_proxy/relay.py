"""The stream loop: upstream bytes to the client as they come, usage tapped on the way.

Each upstream chunk goes through a tap: in passthrough the dialect's own, which hands back
the very same bytes object (unless it had to hide an event); otherwise a translating tap.
Memory per stream is one chunk plus at most one unfinished line. A failure after the
first byte is sent as an in-stream error in the client's format; a client that hangs up
closes the upstream request.

A ``Meter`` counts the model output each frame carries before it goes out (the request's
``Bill``): a frame the hold cannot cover, even extended, is not sent, and the stream ends
with ``insufficient_balance``. The answer's cost is written into its final usage object
(``"cost"``, in credits, as OpenRouter does): a stream's headers are gone by then.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from aiohttp import web

from izzi_proxy import tokens
from izzi_proxy.billing import Bill, Billing
from izzi_proxy.dialects import StreamTap
from izzi_proxy.errors import GatewayError, InsufficientBalance, ServerError, UpstreamConnectionError
from izzi_proxy.exchange import Exchange
from izzi_proxy.keys import CONFIG, LOAD, STREAMS
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.pricing import credits

log = logging.getLogger("izzi.relay")

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{\s*(\}?)')
# Gemini's usage object is usageMetadata, written after the candidates (whose function call
# args are raw JSON objects: a "usage" key there is the model's, never stamped)
_USAGE_OBJECTS = {"gemini": re.compile(rb'"usageMetadata"\s*:\s*\{\s*(\}?)')}


class Meter:
    """A stream's frames, counted against its bill on their way out."""

    __slots__ = ("_bill", "_billing", "_fields", "_stamped", "_usage_object")

    def __init__(self, billing: Billing, bill: Bill, dialect_name: str) -> None:
        self._billing, self._bill = billing, bill
        self._fields = tokens.OUTPUT_FIELDS[dialect_name]
        self._usage_object = _USAGE_OBJECTS.get(dialect_name, _USAGE_OBJECT)
        self._stamped = not billing.enabled

    async def admit(self, out: bytes, tap: StreamTap, record: UsageRecord) -> bytes:
        """The frame to send (its usage stamped with the cost), or InsufficientBalance."""
        bill = self._bill
        bill.usage = tap.usage
        size = tokens.output_bytes(self._fields, out)
        if size:
            if not bill.covers(size) and not await self._billing.extend(bill, size):
                bill.cut = True
                raise InsufficientBalance(
                    f"Not enough credits to continue: the answer so far costs {credits(bill.cost_so_far())} "
                    f"credits, all the account could hold for it; top up to continue",
                    code="insufficient_balance",
                )
            bill.output_bytes += size
            if record.ttft_ms is None:
                record.ttft_ms = (time.time() - record.started_at) * 1000
        if not self._stamped and tap.usage_final and tap.usage is not None:
            out = self._stamp(out, bill.prices.cost(tap.usage))
        return out

    def _stamp(self, out: bytes, cost: int) -> bytes:
        found = None
        for found in self._usage_object.finditer(out):  # noqa: B007 - the last one is the final usage
            pass
        if found is None:
            return out
        self._stamped = True
        at = found.end(0) - len(found.group(1))
        field = b'"cost":' + credits(cost).encode() + (b"" if found.group(1) else b",")
        return out[:at] + field + out[at:]


async def relay_stream(
    request: web.Request, exchange: Exchange, record: UsageRecord, meter: Meter
) -> web.StreamResponse:
    """Relay a stream until its terminal event (or an error), then end it. The record's
    status is set once the answer's last frame is out: whatever the connections do after
    that (a client that hangs up at once, an upstream slow to close) changes nothing."""
    reply, tap = exchange.reply, exchange.tap
    assert tap is not None, "a stream's exchange has its tap"  # (for the type checker)
    headers = {"Content-Type": exchange.parsed.stream_type, **STREAM_HEADERS}
    response = web.StreamResponse(status=reply.status, headers=headers)
    streams = request.app[STREAMS]
    streams.add(task := asyncio.current_task())
    try:
        await response.prepare(request)
        if out := tap.feed(reply.head):
            await response.write(await meter.admit(out, tap, record))
        if not tap.done:
            async for chunk in reply.body:
                if out := tap.feed(chunk):
                    await response.write(await meter.admit(out, tap, record))
                if tap.done:
                    break  # the terminal event is out; the upstream's own end is not waited for
        if out := tap.finish():
            await response.write(await meter.admit(out, tap, record))
        if not (tap.done or tap.error):
            raise UpstreamConnectionError(
                "The upstream ended the stream before it was complete", upstream=record.upstream or "-"
            )
        record.status = response.status
    except GatewayError as err:
        await _end_with_error(response, exchange, record, err)
    except asyncio.CancelledError:
        # The client hung up (handler_cancellation), or the shutdown bound ran out
        # (stop_streams): a client still there is told, and the record says so.
        try:
            await response.write(exchange.error_frame(ServerError("The stream was cut: the gateway is stopping")))
            record.status, record.outcome, record.error_type = response.status, "error", "server_error"
            await response.write_eof()  # a proper end of the chunked body, not a cut connection
        except Exception:
            pass  # the client is gone: the metering middleware records the hang-up
        raise
    except ConnectionResetError:
        raise  # the client hung up (aiohttp's default mode): nobody to tell
    except Exception:
        log.exception("request %s: relay failed", record.request_id)  # a bug after the first byte
        await _end_with_error(response, exchange, record, ServerError("Internal server error"))
    finally:
        streams.discard(task)
        record.usage = tap.usage
        if tap.usage_final:
            record.usage_source = "reported"
        if tap.error:
            record.outcome, record.error_type = "error", "upstream_error"
        await reply.aclose(finished=tap.done)
    await response.write_eof()
    return response


async def _end_with_error(
    response: web.StreamResponse, exchange: Exchange, record: UsageRecord, err: GatewayError
) -> None:
    record.outcome, record.error_type = "error", err.type
    log.warning("request %s: stream ended with %s: %s", record.request_id, err.type, err.message)
    await response.write(exchange.error_frame(err))
    record.status = response.status


async def stop_streams(app: web.Application) -> None:
    """``on_shutdown``: streams still running ``shutdown_timeout_s`` after the stop began (the
    drain included) are ended with an in-stream error (aiohttp is given a few seconds more, so
    they end before it cuts them)."""
    streams = app[STREAMS]

    def cut() -> None:
        for task in list(streams):
            task.cancel()

    if streams:
        asyncio.get_running_loop().call_later(
            max(0.0, app[CONFIG].server.shutdown_timeout_s - app[LOAD].drained_s), cut
        )


async def relay_body(exchange: Exchange, record: UsageRecord, bill: Bill) -> web.Response:
    """A plain answer: the exchange gives the client's body and the usage (the upstream's
    bytes but for the model's name in passthrough, a translation otherwise). With no usage
    in it, the output is estimated from the answer's text."""
    reply = exchange.reply
    try:
        body, record.usage = exchange.answer(reply.head)
    finally:
        await reply.aclose()
    if record.usage is not None:
        record.usage_source = "reported"
    else:
        bill.output_bytes = tokens.output_bytes(tokens.ANSWER_FIELDS, body)
    record.ttft_ms = (time.time() - record.started_at) * 1000
    return web.Response(body=body, status=reply.status, content_type="application/json")
