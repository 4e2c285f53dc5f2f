"""The benchmark suite's own arithmetic: what it counts as served and as delivered, how it pairs
repetitions, and its exit status when a benchmark fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.alert import Stream, _collect
from bench.common import HOST, Served, post_request, ratios
from bench.intake import load

# Answers every request on a kept-alive connection at once with 503, as a server shedding
# load does: fast, and serving nothing.
REFUSING = textwrap.dedent(
    """
    import asyncio, sys

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                length = 0
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\\r\\nRetry-After: 1\\r\\n"
                    b"Content-Length: 2\\r\\n\\r\\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    """
)
PORT = 18551


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[Served]:
    process = subprocess.Popen(
        [sys.executable, "-c", REFUSING, str(PORT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    served = Served(process, f"http://{HOST}:{PORT}", PORT, tmp_path / "refusing.log")
    try:
        yield served
    finally:
        served.stop()


def test_intake_counts_only_the_reports_stored_as_served(refusing: Served) -> None:
    """A server answering 503 at once passed as thousands of requests a second: every answer
    counted as one served. Only the 201s count; the rest are shown as failed."""
    request = post_request(
        "/api/v1/incidents", {"location": {"lon": 114.16, "lat": 22.847}, "category": "theft"}, None
    )
    result = load(refusing, [request], 2, 0.5)
    assert result["statuses"].keys() == {503}, result
    assert result["rps"] == 0.0, result
    assert result["failed"] == result["statuses"][503] > 0, result


def test_alert_delivery_is_counted_by_incident_and_recipient() -> None:
    """Two leaders should have the alert; one had it twice, the other never. Counted by
    receipts, 2 of 2 were delivered and the loss was hidden; by (incident, recipient) pairs,
    1 of 2, with the duplicate counted apart."""
    stream = Stream()
    stream.samples = {"__sent__": json.dumps({"r0-0": 100.0})}
    stream.wanted = {("r0-0", "u1"), ("r0-0", "u2")}
    stream.expected = 2
    receipts = [("r0-0", "u1", 100.004, 500), ("r0-0", "u1", 100.009, 500)]
    _collect([stream], [{"receipts": receipts, "samples": {}}])
    assert (stream.received, stream.expected) == (1, 2)
    assert stream.duplicates == 1
    # The pair's first receipt is its delivery.
    assert stream.latencies_ms == [pytest.approx(4.0)]
    summary = stream.summary()
    assert (summary["deliveries"], summary["duplicate_receipts"]) == (1, 1)


def test_alert_a_receipt_nobody_expected_is_no_delivery() -> None:
    stream = Stream()
    stream.samples = {"__sent__": json.dumps({"r0-0": 100.0})}
    stream.wanted = {("r0-0", "u1")}
    stream.expected = 1
    receipts = [("r0-0", "u9", 100.002, 500)]
    _collect([stream], [{"receipts": receipts, "samples": {}}])
    assert (stream.received, stream.expected) == (0, 1)
    assert stream.unexpected == 1


def test_ratios_pair_repetitions_one_to_one() -> None:
    """Two figures of ours against one of the baseline paired the first and dropped the other;
    it is an error now, as is any count that differs."""
    assert ratios([2.0, 4.0], [1.0, 2.0]).median == 2.0
    with pytest.raises(ValueError, match="repetitions"):
        ratios([2.0, 4.0], [1.0])
    with pytest.raises(ValueError, match="repetitions"):
        ratios([2.0], [1.0, 2.0])


def test_a_benchmark_that_fails_fails_the_run(tmp_path: Path) -> None:
    """The covering benchmark cannot reach its database (nothing listens on the port): the
    run notes it, goes on with the others, and exits 1, where it exited 0 with no row missed."""
    done = subprocess.run(
        [
            sys.executable, "-m", "bench", "--only", "covering", "--zones", "1000",
            "--reps", "1", "--no-postgis", "--points", "100",
            "--json", str(tmp_path / "bench.json"), "--work", str(tmp_path / "work"),
        ],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "DISPATCH_BENCH_PG": "postgresql://postgres@127.0.0.1:18599/postgres"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "note: covering failed" in done.stdout and "failed: covering" in done.stdout
    assert json.loads((tmp_path / "bench.json").read_text())["notes"][0].startswith(
        "covering failed"
    )
