"""Exact, vectorised "is (user, item) a training positive?" for millions of pairs.

Two structures give the same answers (so the sampler's draws are the same):
:class:`BitsetMembership`, one bit per (user, item) cell, and
:class:`HashMembership`, a linear-probing hash set of the keys ``user *
num_items + item``, linear in the positives but slower. :func:`membership`
picks the bitset up to 1 GiB (or the hash set's size).
"""

from __future__ import annotations

import numpy as np

from ncf_tf.core.arrays import distinct_sorted, starts_of_runs

# Fibonacci hashing (the top bits of key * 2**64 / golden ratio) spreads one
# user's consecutive keys over the table.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.uint64(2**64 - 1)   # no key: keys are < num_users * num_items < 2**63
MIN_SLOTS_PER_KEY = 2
BITSET_MAX_BYTES = 1 << 30


class BitsetMembership:
    """One bit per (user, item) cell of a ``num_users x num_items`` matrix."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_users: int, num_items: int):
        self.num_items = num_items
        # int32 keys where they fit: half the bytes.
        self._dtype = np.int32 if num_users * num_items < 2**31 else np.int64
        # Set the bits byte by byte, never holding one byte per cell.
        keys = distinct_sorted(users.astype(np.int64) * num_items + items)
        byte = keys >> 3
        first = np.flatnonzero(starts_of_runs(byte))
        self._bits = np.zeros(bitset_bytes(num_users, num_items), dtype=np.uint8)
        self._bits[byte[first]] = np.bitwise_or.reduceat(
            np.left_shift(1, keys & 7).astype(np.uint8), first)

    @property
    def nbytes(self) -> int:
        return self._bits.nbytes

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: whether each (users[k], items[k]) is a member."""
        keys = users.astype(self._dtype) * self._dtype(self.num_items)
        keys += items
        return (self._bits[keys >> 3] >> (keys & 7).astype(np.uint8)) & np.uint8(1) != 0


class HashMembership:
    """The distinct keys ``user * num_items + item`` in a linear-probing hash set.

    A key probes from its home slot (one of ``2**b >= MIN_SLOTS_PER_KEY * n``)
    on until it finds itself or an empty slot. Built in one pass: in order of
    home slot, key ``k`` goes to ``p_k = max(h_k, p_{k-1} + 1) = k + max_{j <= k}
    (h_j - j)``, a running maximum, so the slots ``h_k..p_k`` are all taken, as
    a lookup needs. The table runs on past ``2**b`` to an empty slot instead of
    wrapping around.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, num_users: int, num_items: int):
        if num_users * num_items >= 2**63:
            raise ValueError(f"{num_users} x {num_items} cells do not fit 63-bit keys")
        self.num_items = num_items
        keys = distinct_sorted(users.astype(np.uint64) * np.uint64(num_items)
                               + items.astype(np.uint64))
        self._shift = np.uint64(64 - _slot_bits(len(keys)))
        home = self._home(keys).astype(np.int64)
        order = np.argsort(home, kind="stable")
        rank = np.arange(len(keys))
        slot = rank + np.maximum.accumulate(home[order] - rank) if len(keys) else rank
        end = int(slot[-1]) + 2 if len(keys) else 1
        self._table = np.full(max(end, 1 << _slot_bits(len(keys))), _EMPTY, dtype=np.uint64)
        self._table[slot] = keys[order]
        self.size = len(keys)

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return (keys * _GOLDEN) >> self._shift

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: whether each (users[k], items[k]) is a member."""
        keys = users.astype(np.uint64) * np.uint64(self.num_items) + items.astype(np.uint64)
        slots = self._home(keys)
        held = self._table[slots]
        found = held == keys
        # Only the keys whose home holds another key probe on.
        active = np.flatnonzero(~found & (held != _EMPTY))
        keys, slots = keys[active], slots[active]
        while len(active):
            slots += np.uint64(1)
            held = self._table[slots]
            hit = held == keys
            found[active[hit]] = True
            going_on = ~hit & (held != _EMPTY)
            active, keys, slots = active[going_on], keys[going_on], slots[going_on]
        return found


def _slot_bits(num_keys: int) -> int:
    return max(4, int(np.ceil(np.log2(max(1, MIN_SLOTS_PER_KEY * num_keys)))))


def bitset_bytes(num_users: int, num_items: int) -> int:
    return -(-num_users * num_items // 8)


def hash_bytes(num_keys: int) -> int:
    """About: the table may run a few slots past its ``2**b``."""
    return 8 << _slot_bits(num_keys)


def membership(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int):
    """An exact structure for the pairs ``(users[k], items[k])``: a bitset up to
    :data:`BITSET_MAX_BYTES` or the hash set's size (faster lookups), else a hash set."""
    bitset = bitset_bytes(num_users, num_items)
    if bitset <= BITSET_MAX_BYTES or bitset <= hash_bytes(len(users)):
        return BitsetMembership(users, items, num_users, num_items)
    return HashMembership(users, items, num_users, num_items)
