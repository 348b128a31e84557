"""ChangelogBackedStore: Faust's RocksDB store without RocksDB's write-ahead log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import faust
from faust.types import TP

from streams.store import BOUNDED_OPTIONS, URL, ChangelogBackedStore

STATE = os.urandom(3072)  # about one series' state


def table_store(data_dir: Path, url: str = URL) -> ChangelogBackedStore:
    app = faust.App("usp-store-test", store=url, datadir=str(data_dir), autodiscover=False)
    store = app.Table("states", partitions=2, key_type=bytes, value_type=bytes).data
    assert isinstance(store, ChangelogBackedStore) or url != URL
    return store  # type: ignore[no-any-return]


def wal_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.rglob("*.log"))


def test_writes_skip_rocksdbs_write_ahead_log_and_read_back_per_partition(tmp_path: Path) -> None:
    store = table_store(tmp_path / "usp")
    for i in range(500):
        store.set_in(1, b"series-%d" % i, STATE)
    assert store.get_in(1, b"series-7") == STATE
    assert store.get_in(0, b"series-7") is None  # partitions are separate databases
    assert wal_bytes(tmp_path / "usp") == 0
    # the same writes through Faust's own RocksDB store do go to its log (so the check above can fail)
    plain = table_store(tmp_path / "plain", "rocksdb://")
    db = plain._db_for_partition(1)
    for i in range(500):
        db.put(b"series-%d" % i, STATE)
    assert wal_bytes(tmp_path / "plain") > 500 * len(STATE)


def memtable_bytes(store: ChangelogBackedStore, partition: int) -> int:
    return int(store._db_for_partition(partition).property_int_value("rocksdb.cur-size-all-mem-tables"))


def test_memtables_stay_bounded_while_many_states_are_written(tmp_path: Path) -> None:
    """30 MB of states into one partition: the store's memtables stay within two of 8 MB (flushed to
    disk, and still read back), where Faust's defaults (64 MB memtables) hold all of it in memory."""
    store = table_store(tmp_path / "usp")
    plain = table_store(tmp_path / "plain", "rocksdb://")
    plain_db = plain._db_for_partition(1)
    for i in range(10_000):
        key = b"series-%d" % (i % 4_000)
        store.set_in(1, key, STATE)
        plain_db.put(key, STATE)
    assert memtable_bytes(store, 1) <= 2 * BOUNDED_OPTIONS["write_buffer_size"] + 2**20
    assert memtable_bytes(plain, 1) > 10_000 * len(STATE)
    assert all(store.get_in(1, b"series-%d" % i) == STATE for i in range(0, 4_000, 97))


def test_the_tables_own_rocksdb_options_win_over_the_bounds(tmp_path: Path) -> None:
    app = faust.App("usp-store-test", store=URL, datadir=str(tmp_path), autodiscover=False)
    table = app.Table("states", partitions=1, key_type=bytes, value_type=bytes,
                      options={"write_buffer_size": 32 * 2**20})
    store = table.data
    assert isinstance(store, ChangelogBackedStore)
    assert store.rocksdb_options.write_buffer_size == 32 * 2**20
    assert store.rocksdb_options.block_cache_size == BOUNDED_OPTIONS["block_cache_size"]


def test_a_clean_stop_keeps_every_state_for_the_next_start(tmp_path: Path) -> None:
    store = table_store(tmp_path)
    for i in range(200):
        store.set_in(i % 2, b"series-%d" % i, STATE)
    asyncio.run(store.stop())
    again = table_store(tmp_path)
    assert all(again.get_in(i % 2, b"series-%d" % i) == STATE for i in range(200))


def write_and_die(data_dir: Path, revoke: bool) -> None:
    """In a child process: 200 states into partition 1, optionally the partition revoked (which flushes
    it), then an exit that closes nothing, as a crash would."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.streams.test_store import table_store, STATE
        from faust.types import TP
        from pathlib import Path
        store = table_store(Path({str(data_dir)!r}))
        for i in range(200):
            store.set_in(1, b"series-%d" % i, {STATE!r})
        if {revoke!r}:
            store.revoke_partitions(store.table, {{TP(store.table.changelog_topic.get_topic_name(), 1)}})
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_revoked_partition_is_flushed_and_an_unflushed_crash_loses_only_what_the_changelog_has(
        tmp_path: Path) -> None:
    # Without the log, a crash loses the memtable (the changelog is what recovery replays then) ...
    write_and_die(tmp_path / "crash", revoke=False)
    assert table_store(tmp_path / "crash").get_in(1, b"series-0") is None
    # ... and handing a partition to another worker flushes it first, so nothing is lost that way.
    write_and_die(tmp_path / "revoke", revoke=True)
    store = table_store(tmp_path / "revoke")
    assert all(store.get_in(1, b"series-%d" % i) == STATE for i in range(200))


def test_many_key_reads_and_writes_agree_with_rocksdb_itself(tmp_path: Path) -> None:
    """`set_many_in` writes one batch per partition; `get_many_in` reads recent writes from memory and
    the rest from RocksDB: both give what RocksDB holds, a missing key None."""
    store = table_store(tmp_path)
    first = [(b"series-%d" % i, os.urandom(64)) for i in range(50)]
    store.set_many_in(0, first)
    store.set_many_in(1, [(b"series-3", b"in partition 1")])
    keys = [key for key, _ in first] + [b"absent"]
    expected = [value for _, value in first] + [None]
    assert store.get_many_in(0, keys) == expected  # from memory
    assert [store._db_for_partition(0).get(key) for key in keys] == expected  # what RocksDB holds
    store.forget_recent()
    assert store.get_many_in(0, keys) == expected  # from RocksDB
    assert store.get_in(1, b"series-3") == b"in partition 1" and store.get_in(1, b"series-4") is None


def test_recent_writes_kept_in_memory_are_bounded_and_the_rest_read_from_rocksdb(tmp_path: Path) -> None:
    store = table_store(tmp_path)
    store.recent_limit = 10 * len(STATE)
    for i in range(50):
        store.set_in(i % 2, b"series-%d" % i, STATE[:-2] + b"%02d" % i)
    assert len(store._recent) == 10 and store._recent_bytes == 10 * len(STATE)
    assert (1, b"series-49") in store._recent and (0, b"series-0") not in store._recent  # the oldest went
    assert all(store.get_in(i % 2, b"series-%d" % i) == STATE[:-2] + b"%02d" % i for i in range(50))


def test_writes_that_bypass_the_worker_are_never_hidden_by_remembered_values(tmp_path: Path) -> None:
    """A changelog recovery (another worker's newer state) and Faust's own deletes go to RocksDB
    without passing `set_in`: the next read sees them, not the value remembered before."""
    from types import SimpleNamespace

    store = table_store(tmp_path)
    store.set_in(1, b"a", b"old a")
    store.set_in(1, b"b", b"old b")
    tp = TP(store.table.changelog_topic.get_topic_name(), 1)
    newer = SimpleNamespace(message=SimpleNamespace(tp=tp, offset=7, partition=1, key=b"a", value=b"new a"))
    store.apply_changelog_batch([newer], lambda k: k, lambda v: v)
    assert store.get_in(1, b"a") == b"new a"
    store._del(b"b")
    assert store.get_in(1, b"b") is None
