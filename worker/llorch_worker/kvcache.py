"""A KV-cache layer that grows in place: the decode step writes its key/value into spare room.

transformers' DynamicLayer appends by `torch.cat`, which copies the whole cache of the layer on
every decode step (O(length) per token, O(length²) per request); with a batch of rows it was the
largest cost after the matmuls in the worker's profile. This layer keeps a buffer with room to
spare (growing by its own length up to GROW_MAX tokens at a time, so copies are rare) and hands attention a view of
the filled part. Assigning `keys`/`values` (what the scheduler's merge and trim do) replaces the
buffer, so every other use of a DynamicLayer keeps working.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

GROW_MIN = 64  # tokens of room added at least when a layer grows
# ...and at most: doubling a long prompt's cache would hold twice its tokens (three times while it is
# copied), which the fit estimate (weights + KV at the context length) does not expect; a bounded step
# keeps the spare room small while a copy still comes only every GROW_MAX tokens.
GROW_MAX = 256


class GrowingLayer(DynamicLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kbuf: torch.Tensor | None = None
        self._vbuf: torch.Tensor | None = None
        self._klen = self._vlen = 0  # filled length of each buffer (equal between assignments)
        self.is_initialized: bool = False
        super().__init__(*args, **kwargs)

    # `keys`/`values`: the filled part of the buffers (views); assigning one adopts it as the buffer
    @property
    def keys(self) -> torch.Tensor | None:
        return None if self._kbuf is None else self._kbuf[:, :, :self._klen]

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        self._kbuf, self._klen = value, _length(value)

    @property
    def values(self) -> torch.Tensor | None:
        return None if self._vbuf is None else self._vbuf[:, :, :self._vlen]

    @values.setter
    def values(self, value: torch.Tensor | None) -> None:
        self._vbuf, self._vlen = value, _length(value)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized or self._kbuf is None or self._vbuf is None or self._klen == 0:
            self.device = key_states.device
            self.is_initialized = True
            self.keys, self.values = key_states, value_states
            return key_states, value_states
        n, new = self._klen, key_states.shape[-2]
        if n + new > self._kbuf.shape[-2] or n + new > self._vbuf.shape[-2]:
            room = n + new + max(GROW_MIN, min(n, GROW_MAX))
            self._kbuf = self._grow(self._kbuf, n, room)
            self._vbuf = self._grow(self._vbuf, n, room)
        self._kbuf[:, :, n:n + new] = key_states
        self._vbuf[:, :, n:n + new] = value_states
        self._klen = self._vlen = n + new
        return self._kbuf[:, :, :n + new], self._vbuf[:, :, :n + new]

    @staticmethod
    def _grow(buf: torch.Tensor, n: int, room: int) -> torch.Tensor:
        shape = list(buf.shape)
        shape[-2] = room
        out = buf.new_empty(shape)
        out[:, :, :n] = buf[:, :, :n]
        return out

    def get_seq_length(self) -> int:
        return self._klen if self.is_initialized else 0


def _length(t: torch.Tensor | None) -> int:
    return 0 if t is None or t.dim() < 3 else int(t.shape[-2])


def growing_cache(config: Any) -> Any:
    """A DynamicCache for `config` whose plain (full-attention) layers grow in place; sliding-window
    and other special layers stay as transformers made them."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
