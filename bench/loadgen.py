"""HTTP/1.1 load generators (asyncio, keep-alive) for loopback benchmarks.

Closed loop (``run``): each of ``concurrency`` connections sends the next prepared request as
soon as the previous answer arrived, for a fixed time; latencies are measured per request.
Paced (``run_paced``): request i leaves at i / rate, whatever the answers, so a rate can be
asked for. Loopback only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _worker(host, port, requests, offset, deadline, measure_from, result: Result):
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            writer.write(requests[i % len(requests)])
            i += 1
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            done = time.perf_counter()
            if now >= measure_from:
                result.requests += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_ms.append((done - now) * 1000)
    finally:
        writer.close()


async def _run(host, port, requests, concurrency, warmup_s, seconds) -> Result:
    result = Result()
    start = time.perf_counter()
    measure_from = start + warmup_s
    deadline = measure_from + seconds
    await asyncio.gather(
        *(
            _worker(host, port, requests, n * 7919, deadline, measure_from, result)
            for n in range(concurrency)
        )
    )
    result.seconds = seconds
    return result


def run(host: str, port: int, requests: list[bytes], *, concurrency=32, warmup_s=2.0, seconds=10.0):
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator only targets loopback")
    return asyncio.run(_run(host, port, requests, concurrency, warmup_s, seconds))


async def _run_paced(host, port, requests, rate, concurrency) -> Result:
    result = Result()
    queue = iter(enumerate(requests))
    start = time.perf_counter()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i, request in queue:  # shared: each request is taken by one connection
                if (delay := start + i / rate - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                sent = time.perf_counter()
                writer.write(request)
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.requests += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def run_paced(host: str, port: int, requests: list[bytes], *, rate: float, concurrency=32):
    """Send every request, request i at i / ``rate`` s from the start (a late one as soon as a
    connection is free: at most ``concurrency`` in flight); ``seconds`` is the whole run."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator only targets loopback")
    return asyncio.run(_run_paced(host, port, requests, rate, concurrency))


def http_post(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body
