"""The hashes that pick a partition, the same in every run of the program.

Python salts ``hash()`` of str and bytes per interpreter run, so a partition
chosen with it would change from run to run. Two hashes live here, for two
different contracts:

* :func:`stable_hash` routes a key to a partition the user can rely on
  (``otpy.partition``, ``flow`` and the stage ``PartitionDispatcher``): the
  same number for the same key in every run and on every machine, with ints
  going to ``abs(key)``. Keys of different types are different keys here
  (``1``, ``1.0`` and ``True`` may route apart).
* :func:`equal_keys_hash` picks the lock partition of a ``Registry`` key. The
  registry is a mapping, so keys that compare equal (``1``, ``1.0``, ``True``;
  ``("x", 2)`` and ``("x", 2.0)``) must land in the same partition; it is
  ``hash()`` except for strs, bytes and tuples, which it makes run-stable.

Example::

    stable_hash("abc")          # 891568578, in every run
    equal_keys_hash(1.0) == equal_keys_hash(1) == equal_keys_hash(True)

Both keep the numbers they had when they lived in ``_partition_supervisor``
and ``_registry``; the tests pin them.
"""

from __future__ import annotations

import zlib

__all__ = ["equal_keys_hash", "stable_hash"]


def stable_hash(key: object) -> int:
    """A non-negative hash of ``key`` that does not change between runs.

    ints hash to their absolute value; str, bytes, floats, None and bools by
    CRC-32 of a canonical encoding; tuples and frozensets by combining their
    items. Other objects fall back to ``hash()`` (stable only if theirs is).

    Example::

        stable_hash(-7) == 7
        stable_hash(("user", 42)) % partitions    # the same in every run
    """
    if isinstance(key, bool) or key is None:
        return zlib.crc32(repr(key).encode())
    if isinstance(key, int):
        return abs(key)
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, (bytes, bytearray, memoryview)):
        return zlib.crc32(bytes(key))
    if isinstance(key, float):
        return zlib.crc32(repr(key).encode())
    if isinstance(key, tuple):
        acc = 0x345678
        for item in key:
            acc = zlib.crc32(stable_hash(item).to_bytes(16, "little", signed=False), acc)
        return acc
    if isinstance(key, frozenset):
        return sum(stable_hash(item) for item in key) & 0xFFFFFFFF
    return abs(hash(key))


def equal_keys_hash(term: object) -> int:
    """``hash(term)``, except that strs, bytes and tuples hash the same in every run.

    Keys that compare equal hash alike (as with ``hash()``), so it can pick the
    partition of a mapping's key. It may be negative; take it modulo the count.

    Example::

        equal_keys_hash("abc") == zlib.crc32(b"abc")
        equal_keys_hash(("x", 2)) == equal_keys_hash(("x", 2.0))
    """
    if isinstance(term, (str, bytes)):
        return stable_hash(term)  # CRC-32: a str and a bytes never compare equal
    if isinstance(term, tuple):
        h = 0x345678
        for item in term:
            h = ((h * 1000003) ^ equal_keys_hash(item)) & 0xFFFFFFFFFFFF
        return h
    return hash(term)
