"""Stability: 1000 sequential short requests and bursts of 10 concurrent, zero errors, RSS bounded."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

pytestmark = pytest.mark.slow

SEQUENTIAL = 1000
WARM = 100
RSS_GROWTH_LIMIT = 48 * 2**20  # allocator noise is a few MiB; a per-request cache leak is far more


async def test_1000_sequential_then_bursts(workers: dict) -> None:
    url = workers["llama"].url
    prompts = ["Hi", "Hello there, how are you?", "你好 🦙", "The quick brown fox " * 10]
    errors: list[str] = []
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> None:
            body = {"job_id": f"seq-{i}", "prompt": prompts[i % len(prompts)], "max_tokens": 3, "seed": i,
                    "temperature": 0.5}
            async with s.post(f"{url}/execute", json=body) as r:
                data = await r.json()
                if r.status != 200 or data.get("job_id") != f"seq-{i}":
                    errors.append(f"{i}: {r.status} {data}")

        async def rss() -> int:
            async with s.get(f"{url}/health") as r:
                return int((await r.json())["memory"]["rss"])

        for i in range(WARM):
            await one(i)
        rss_start = await rss()
        for i in range(WARM, SEQUENTIAL):
            await one(i)
        rss_end = await rss()

        for burst in range(5):
            await asyncio.gather(*(one(10_000 + burst * 10 + k) for k in range(10)))
        async with s.get(f"{url}/health") as r:
            health = await r.json()

    assert errors == []
    growth = rss_end - rss_start
    print(f"\nRSS {rss_start / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB over {SEQUENTIAL - WARM} requests")
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.1f} MiB over {SEQUENTIAL - WARM} requests"
    assert health["in_flight"] == 0 and health["queue_depth"] == 0 and health["status"] == "ok"
