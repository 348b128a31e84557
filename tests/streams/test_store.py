"""ChangelogBackedStore: Faust's RocksDB store without RocksDB's write-ahead log."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import faust

from streams.store import ChangelogBackedStore, register

STATE = os.urandom(3072)  # about one series' state


def table_store(data_dir: Path, url: str) -> object:
    app = faust.App("usp-store-test", store=url, datadir=str(data_dir), autodiscover=False)
    return app.Table("states", partitions=2, key_type=bytes, value_type=bytes).data


def wal_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.rglob("*.log"))


def test_writes_skip_rocksdbs_write_ahead_log_and_read_back_per_partition(tmp_path: Path) -> None:
    store = table_store(tmp_path / "usp", register())
    assert isinstance(store, ChangelogBackedStore)
    for i in range(500):
        store.set_in(1, b"series-%d" % i, STATE)
    assert store.get_in(1, b"series-7") == STATE
    assert store.get_in(0, b"series-7") is None  # partitions are separate databases
    assert wal_bytes(tmp_path / "usp") == 0
    # the same writes through Faust's own RocksDB store do go to its log (so the check above can fail)
    plain = table_store(tmp_path / "plain", "rocksdb://")
    db = plain._db_for_partition(1)  # type: ignore[attr-defined]
    for i in range(500):
        db.put(b"series-%d" % i, STATE)
    assert wal_bytes(tmp_path / "plain") > 500 * len(STATE)


def test_a_clean_stop_keeps_every_state_for_the_next_start(tmp_path: Path) -> None:
    store = table_store(tmp_path, register())
    assert isinstance(store, ChangelogBackedStore)
    for i in range(200):
        store.set_in(i % 2, b"series-%d" % i, STATE)
    asyncio.run(store.stop())
    again = table_store(tmp_path, register())
    assert isinstance(again, ChangelogBackedStore)
    assert all(again.get_in(i % 2, b"series-%d" % i) == STATE for i in range(200))
