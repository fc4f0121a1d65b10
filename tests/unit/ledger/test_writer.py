"""The usage writer: batches, flush, retries, and nothing lost silently at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from izzi_proxy.ledger import UsageRecord, open_ledger
from izzi_proxy.ledger.writer import UsageWriter


def record(i: int) -> UsageRecord:
    return UsageRecord(request_id=f"req_{i}", endpoint="/v1/chat/completions", started_at=float(i))


class FlakyLedger:
    """Fails its first ``failures`` writes, remembers every batch it was given."""

    def __init__(self, failures: int = 0, block: asyncio.Event | None = None) -> None:
        self.failures = failures
        self.block = block
        self.batches: list[list[str]] = []

    async def record_usages(self, records: Sequence[UsageRecord]) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.batches.append([r.request_id for r in records])


async def test_records_reach_the_sqlite_ledger(tmp_path) -> None:
    ledger = await open_ledger(f"sqlite:///{tmp_path}/w.sqlite3")
    writer = UsageWriter(ledger, max_batch=7)
    writer.start()
    for i in range(100):  # more than one INSERT's worth of rows per batch, and several batches
        writer.submit(record(i))
    await writer.flush()
    assert len(await ledger.usage_records(limit=1000)) == 100
    await writer.aclose()
    await ledger.aclose()


async def test_records_queued_during_a_write_go_in_one_batch() -> None:
    gate = asyncio.Event()
    ledger = FlakyLedger(block=gate)
    writer = UsageWriter(ledger)
    writer.start()
    writer.submit(record(0))
    await asyncio.sleep(0)  # the writer takes record 0 and waits on the ledger
    for i in range(1, 6):
        writer.submit(record(i))
    gate.set()
    await writer.flush()
    assert ledger.batches == [["req_0"], ["req_1", "req_2", "req_3", "req_4", "req_5"]]
    await writer.aclose()


async def test_a_failed_write_is_retried(caplog) -> None:
    ledger = FlakyLedger(failures=2)
    writer = UsageWriter(ledger, retry_s=0.01)
    writer.start()
    writer.submit(record(1))
    await asyncio.wait_for(writer.flush(), timeout=5)
    assert ledger.batches == [["req_1"]]
    assert caplog.text.count("usage records failed; retrying") == 2
    await writer.aclose()


async def test_records_that_cannot_be_written_are_logged_at_shutdown(caplog) -> None:
    writer = UsageWriter(FlakyLedger(failures=10**6), retry_s=0.01)
    writer.start()
    writer.submit(record(42))
    with caplog.at_level(logging.ERROR, logger="izzi.usage"):
        await writer.aclose(timeout_s=0.1)
    assert "usage record not written" in caplog.text and '"request_id":"req_42"' in caplog.text


async def test_the_buffer_is_bounded_and_what_overflows_is_logged(caplog) -> None:
    writer = UsageWriter(FlakyLedger(failures=10**6), retry_s=0.01, max_queued=3)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="izzi.usage"):
        for i in range(5):
            writer.submit(record(i))
        assert caplog.text.count("usage record not written (3 waiting)") == 2
        assert '"request_id":"req_3"' in caplog.text and '"request_id":"req_4"' in caplog.text
        await writer.aclose(timeout_s=0.1)
    assert all(f'"request_id":"req_{i}"' in caplog.text for i in range(5))  # the queued ones at shutdown


@pytest.mark.parametrize("count", [0, 3])
async def test_flush_returns_when_idle(count: int) -> None:
    writer = UsageWriter(FlakyLedger())
    writer.start()
    for i in range(count):
        writer.submit(record(i))
    await asyncio.wait_for(writer.flush(), timeout=1)
    await writer.aclose()
