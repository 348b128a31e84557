"""The state table's local store: Faust's RocksDB store with RocksDB's write-ahead log turned off.

The changelog topic is the durable copy of every state; the local store is a cache of it that makes a
restart on the same data directory quick. RocksDB's write-ahead log would make the cache durable
twice over, and it cost most of a put: a 3 KB state took about 12 µs with it and 2-3 µs without on
the 2-core machine (the worker writes one per series per micro-batch). Kafka Streams turns it off for
its changelogged RocksDB stores for the same reason.

Why a crash stays safe: with the log off, what a crash loses is the memtables not yet flushed, and
RocksDB flushes memtables in write order, so what survives is a prefix of the writes. The store's
changelog offset (`set_persisted_offset`) is written after the states it covers, so a surviving
offset never runs ahead of its states, and recovery replays the changelog from that offset. A clean
stop, or a partition moving to another worker, flushes that partition's memtables (Faust's own store
leaves closing to the garbage collector).

Memory is bounded per partition (`BOUNDED_OPTIONS`): Faust's RocksDB defaults hold up to three 64 MB
memtables and a 2 GB block cache for each partition's database, so a worker's resident set grew with
the state bytes it had written (3 KB per series per micro-batch) until eight partitions' memtables
filled: 1,119 MB after 157,000 observations over 2,000 series in one run of the bench's pipeline
stage (a worker holds about 640 MB after warm-up: README, "Performance").

`get_in` and `set_in` (and their many-key forms) read and write one partition's database directly:
the worker knows each series' partition (its source partition), so Faust's per-key event lookup is not
needed.

The values these methods wrote last are also kept in memory (`RECENT_BYTES` of them, oldest dropped
first) and read from there: the worker reads every state it wrote a micro-batch before, and a RocksDB
read of one (a memtable skip-list seek and a copy) was 3.6% of a worker's samples in a 1,000-series
drain (py-spy), about as much as the write. Anything else that writes the databases (changelog
recovery, Faust's own table writes, a rebalance, a reset) empties it first.

Registered with Faust as the `usprocksdb://` store when this module is imported (`streams.app`'s
default).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import faust.stores
import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, CollectionT, EventT

SCHEME = "usprocksdb"
URL = f"{SCHEME}://"


#: RocksDB options for each partition's database unless the table's own `options` say otherwise: two
#: 8 MB memtables (a flush every ~2,700 states of 3 KB) and a 16 MB block cache (reads past it come
#: from the OS page cache, which the process's resident set does not count).
BOUNDED_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 8 * 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * 2**20,
}


#: Bytes of the values written last that a store keeps in memory for reads (about 10,000 states of 3 KB).
RECENT_BYTES = 32 * 2**20


class ChangelogBackedStore(RocksDBStore):
    """Faust's RocksDB store without RocksDB's write-ahead log (the changelog is the durable copy)."""

    def __init__(self, *args: Any, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, options={**BOUNDED_OPTIONS, **(options or {})}, **kwargs)
        self._recent: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()  # (partition, key) -> value
        self._recent_bytes = 0
        self.recent_limit = RECENT_BYTES
        self._no_wal = self._no_wal_options()  # made once: every write batch names it

    def _remember(self, partition: int, key: bytes, value: bytes) -> None:
        recent = self._recent
        old = recent.pop((partition, key), None)
        if old is not None:
            self._recent_bytes -= len(old)
        recent[(partition, key)] = value
        self._recent_bytes += len(value)
        while self._recent_bytes > self.recent_limit and recent:
            self._recent_bytes -= len(recent.popitem(last=False)[1])

    def forget_recent(self) -> None:
        """Empty the in-memory copy of recent writes (the next reads come from RocksDB)."""
        self._recent.clear()
        self._recent_bytes = 0

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        self.forget_recent()
        super().apply_changelog_batch(batch, to_key, to_value)

    def _set(self, key: bytes, value: bytes | None) -> None:
        self.forget_recent()
        super()._set(key, value)

    def _del(self, key: bytes) -> None:
        self.forget_recent()
        super()._del(key)

    def reset_state(self) -> None:
        self.forget_recent()
        super().reset_state()

    async def assign_partitions(self, table: CollectionT, tps: set[TP], generation_id: int = 0) -> None:
        self.forget_recent()
        await super().assign_partitions(table, tps, generation_id)

    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        if self.use_rocksdict:
            db.set_write_options(self._no_wal)
        return db

    @staticmethod
    def _no_wal_options() -> rocksdict.WriteOptions:
        options = rocksdict.WriteOptions()
        options.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method
        return options

    async def stop(self) -> None:
        self._flush(list(self._dbs.values()))
        await super().stop()

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        self.forget_recent()
        topics = table.changelog_topic.topics
        self._flush([self._dbs[tp.partition] for tp in tps if tp.topic in topics and tp.partition in self._dbs])
        super().revoke_partitions(table, tps)

    def _flush(self, dbs: list[Any]) -> None:
        if self.use_rocksdict:
            for db in dbs:
                db.flush()

    def get_in(self, partition: int, key: bytes) -> bytes | None:
        """The value of `key` in `partition`'s database, or None."""
        return self.get_many_in(partition, [key])[0]

    def set_in(self, partition: int, key: bytes, value: bytes) -> None:
        """Store `value` under `key` in `partition`'s database (as a write under one of its events would)."""
        self.set_many_in(partition, [(key, value)])

    def get_many_in(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        """`get_in` for many keys of one partition: recent writes from memory, the rest in one multi-get
        (a micro-batch reads each series' state, a few hundred per partition under backlog)."""
        recent = self._recent
        values: list[bytes | None] = [recent.get((partition, key)) for key in keys]
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            db = self._db_for_partition(partition)
            wanted = [keys[i] for i in missing]
            found = db.get(wanted) if self.use_rocksdict else [db.get(key) for key in wanted]
            for i, value in zip(missing, found, strict=True):
                values[i] = value
        return values

    def set_many_in(self, partition: int, items: list[tuple[bytes, bytes]]) -> None:
        """`set_in` for many keys of one partition, as one write batch."""
        db = self._db_for_partition(partition)
        index = self._key_index
        if self.use_rocksdict:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in items:
                batch.put(key, value)
            db.write(batch, self._no_wal)  # named: whether `write` takes the preset is not documented
        else:
            for key, value in items:
                db.put(key, value)
        for key, value in items:  # once written
            index[key] = partition
            self._remember(partition, key, value)


faust.stores.STORES.aliases[SCHEME] = f"{__name__}:ChangelogBackedStore"
