"""The local realtime server (``python -m engine.server``) as a child process on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from benchmarks._common import cpu_seconds_of, free_port

PATH = "/api/v1/realtime/session"


@attrs.frozen
class Server:
    """A running server: where it listens and its process id (for its CPU time)."""

    port: int
    pid: int

    def url(self) -> str:
        """A URL with the query the server requires (any key is accepted)."""
        return f"ws://127.0.0.1:{self.port}{PATH}?key=bench&protocol=realtime"

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far."""
        return cpu_seconds_of(self.pid)


@contextmanager
def local_server(*, pace: float = 1.0, backend: str = "asyncio") -> Iterator[Server]:
    """Start the local server in its own process for the block; stop it after."""
    port = free_port()
    command = [
        sys.executable, "-m", "engine.server", "--host", "127.0.0.1", "--port", str(port),
        "--pace", str(pace), "--backend", backend, "--log-level", "WARNING",
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_listening(port, process)
            yield Server(port=port, pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.seek(0)
            errors = [line for line in log.read().splitlines() if "ERROR" in line or "Traceback" in line]
            if errors:
                print(f"local server reported: {errors[:5]}", file=sys.stderr)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the local server did not listen on port {port} within {timeout}s")
