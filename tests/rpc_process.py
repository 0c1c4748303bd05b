"""Start `selfextend-gguf rpc-server` as a real process on a loopback port, for tests."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

from server_process import free_port


class RpcServer:
    def __init__(self, threads: int = 1, timeout_s: float = 120.0):
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfextend_gguf", "rpc-server", "--port", str(self.port),
             "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rpc-server exited early:\n{self.proc.stdout.read()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("rpc-server did not listen in time")

    def kill(self) -> None:
        """As a crash would: SIGKILL, and wait until the process is gone."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


class WrongVersionServer:
    """Answers the RPC handshake (HELLO) as a server of another protocol version would."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(1 + 8 + 24)                      # HELLO: command, size, capabilities
                    conn.sendall(struct.pack("<Q", 28) + bytes([6, 0, 0, 0]) + bytes(24))   # version 6.0.0
                    time.sleep(0.5)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
