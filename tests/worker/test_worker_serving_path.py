"""The serving path's parts on their own (no model, no process): the in-place growing KV-cache layer
and the coalesced decode-thread → event-loop hand-off. End to end they are exercised by every
generation test (the worker's output must equal plain `model.generate`, alone and in batches)."""

from __future__ import annotations

import asyncio
import threading

import torch
from transformers.cache_utils import DynamicLayer

from llorch_worker.kvcache import GrowingLayer
from llorch_worker.outbox import Outbox


def test_growing_layer_matches_dynamic_layer_through_merge_trim_and_select() -> None:
    grow, plain = GrowingLayer(), DynamicLayer()
    gen = torch.Generator().manual_seed(0)

    def step(n: int, rows: int = 3) -> None:
        k, v = torch.randn(rows, 2, n, 4, generator=gen), torch.randn(rows, 2, n, 4, generator=gen)
        got, want = grow.update(k, v), plain.update(k, v)
        for g, w in zip(got, want):
            assert torch.equal(g, w)

    step(5)  # the prefill: adopted as is
    buffers = []
    for _ in range(150):  # decode steps: written into spare room, which grows in bounded steps
        step(1)
        assert grow._kbuf is not None
        buffers.append(grow._kbuf.data_ptr())
    assert grow.get_seq_length() == plain.get_seq_length() == 155
    assert len(set(buffers)) <= 4, "the buffer must grow rarely (amortised), not on every step"
    # what the scheduler does to a batch: drop rows, trim leading columns, assign merged tensors
    idx = torch.tensor([0, 2])
    grow.batch_select_indices(idx)
    plain.batch_select_indices(idx)
    for layer in (grow, plain):
        layer.keys = layer.keys[:, :, 7:, :]
        layer.values = layer.values[:, :, 7:, :]
    step(1, rows=2)
    step(2, rows=2)
    assert torch.equal(grow.keys, plain.keys) and torch.equal(grow.values, plain.values)
    assert grow.get_seq_length() == plain.get_seq_length() == 151


def test_outbox_delivers_every_event_in_order_with_few_loop_wakeups() -> None:
    async def main() -> tuple[list[list[int]], int]:
        loop = asyncio.get_running_loop()
        box = Outbox(loop)
        wakeups = 0
        deliver = box._deliver

        def counted() -> None:
            nonlocal wakeups
            wakeups += 1
            deliver()

        box._deliver = counted  # type: ignore[method-assign]
        queues: list[asyncio.Queue[dict[str, int]]] = [asyncio.Queue() for _ in range(4)]
        sends = [box.sender(q) for q in queues]

        def producer() -> None:  # the decode thread: 4 rows x 200 steps, while the loop is busy
            for i in range(200):
                for send in sends:
                    send({"i": i})

        thread = threading.Thread(target=producer)
        thread.start()
        thread.join()  # the loop was blocked meanwhile: everything is pending in few callbacks
        got: list[list[int]] = []
        for q in queues:
            got.append([(await q.get())["i"] for _ in range(200)])
            assert q.empty()
        return got, wakeups

    got, wakeups = asyncio.run(main())
    assert got == [list(range(200))] * 4
    assert 1 <= wakeups <= 2, f"{wakeups} loop wake-ups for 800 events: the hand-off is not coalesced"
