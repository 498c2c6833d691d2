"""Scale-out: one migration over many workers (docs/scale-out.md).

Static shards (``regcopy sync PLAN --shard I/N``, no broker) and a Redis-backed task queue
(``regcopy worker`` / ``regcopy sync PLAN --redis URL``), with one blob ledger across all of them.
The optional engines (``dramatiq``, ``redis``: the ``regcopy[scale]`` extra) are imported only by the
modules that need them, never by this package's ``__init__`` nor by the core library.
"""

from __future__ import annotations

from regcopy.scale.units import DEFAULT_BIG_IMAGE, Unit, make_units, parse_shard, shard_of

__all__ = ("DEFAULT_BIG_IMAGE", "Unit", "make_units", "parse_shard", "shard_of")
