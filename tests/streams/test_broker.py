import os
import socket
import subprocess
import sys
import time

import pytest

from streams.broker import BrokerError, EmbeddedBroker
from streams.kafka import bootstrap_servers, ensure_topics


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def wait_until(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_broker_serves_kafka_and_stops_cleanly() -> None:
    with EmbeddedBroker() as broker:
        pid = broker.pid
        assert pid is not None and pid_alive(pid)
        ensure_topics(broker.url, 3, ("t1",))
        from kafka import KafkaConsumer
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        assert consumer.partitions_for_topic("t1") == {0, 1, 2}
        consumer.close()
    assert wait_until(lambda: not pid_alive(pid), 5)


def test_broker_on_a_taken_port_fails_with_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(BrokerError, match="already in use"):
            broker.start(timeout_s=5)
        assert broker.pid is None


def test_broker_dies_with_a_killed_parent() -> None:
    code = ("from streams.broker import EmbeddedBroker; import sys, time; "
            "b = EmbeddedBroker().start(); print(b.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert parent.stdout is not None
    broker_pid = int(parent.stdout.readline())
    assert pid_alive(broker_pid)
    parent.kill()
    parent.wait()
    assert wait_until(lambda: not pid_alive(broker_pid), 5), "orphan broker left behind"


def test_bootstrap_url_validation() -> None:
    assert bootstrap_servers("kafka://a:1,b:2") == "a:1,b:2"
    for bad in ("http://a:1", "kafka://", "kafka://a"):
        with pytest.raises(ValueError):
            bootstrap_servers(bad)
