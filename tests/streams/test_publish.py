import itertools

from streams.publish import demo_path, interleave, read_csv


def test_bundled_demo_series_interleave_keeping_each_series_in_file_order() -> None:
    a = list(read_csv(demo_path("machine_temperature"), "machine_temperature"))
    b = list(read_csv(demo_path("nyc_taxi"), "nyc_taxi"))
    rows = list(interleave(a, b))
    assert len(rows) == len(a) + len(b) == 22695 + 10320
    assert [r for r in rows if r.series_id == "machine_temperature"] == a
    assert [r for r in rows if r.series_id == "nyc_taxi"] == b
    # the real data has one timestamp that goes backwards; the stream will refuse it as stale
    assert sum(x.ts_ns > y.ts_ns for x, y in itertools.pairwise(a)) == 1
    switches = sum(x.series_id != y.series_id for x, y in itertools.pairwise(rows))
    assert switches > 1000


def test_publish_rows_delivers_every_row_once_in_its_series_order_at_the_pace_asked() -> None:
    """Through the workers' batching producer on the embedded broker: `limit` rows of two interleaved
    series, each exactly once, each series in file order (one key, one partition), paced."""
    import threading
    import time

    from models.config import StreamsConfig
    from streams import codecs
    from streams.broker import EmbeddedBroker
    from streams.kafka import ensure_topics
    from streams.publish import publish_rows
    from streams.tail import FollowedRecord, follow
    from streams.topics import OBSERVATIONS

    rows = list(interleave(read_csv(demo_path("nyc_taxi"), "a"), read_csv(demo_path("nyc_taxi"), "b")))
    limit, rate = 400, 800.0
    handed: list[tuple[str, int]] = []
    got: list[tuple[str, int]] = []
    done = threading.Event()

    def on_record(topic: str, rec: FollowedRecord) -> None:
        msg = codecs.decode_observation(rec.key, rec.value)
        assert not isinstance(msg, codecs.Refusal)
        got.append((msg.series_id, msg.ts_ns))
        if len(got) >= limit:
            done.set()

    with EmbeddedBroker() as broker:
        ensure_topics(broker.url, 4)
        started = time.monotonic()
        sent = publish_rows(broker.url, StreamsConfig(), rows, rate=rate, limit=limit,
                            on_sent=lambda row, wall: handed.append((row.series_id, row.ts_ns)))
        took = time.monotonic() - started
        reader = threading.Thread(target=follow, args=(broker.url, (OBSERVATIONS,), on_record, done), daemon=True)
        reader.start()
        assert done.wait(60), f"{len(got)} of {limit} read back"
        reader.join(10)
    assert sent == limit == len(handed) and handed == [(r.series_id, r.ts_ns) for r in rows[:limit]]
    assert sorted(got) == sorted(handed)  # each once
    for sid in ("a", "b"):
        assert [g for g in got if g[0] == sid] == [h for h in handed if h[0] == sid]  # in order
    assert took >= (limit - 1) / rate * 0.95  # paced, not sent in one burst
