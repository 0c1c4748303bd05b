"""Beyond one machine: llama.cpp's RPC backend. Other machines run `selfextend-gguf
rpc-server` (their CPU or GPU offered as a device); `Llama(..., rpc_servers="host:port,...")`
places layers on them as on local GPUs (n_gpu_layers and tensor_split decide how many and
where). Self-Extend's graphs use stock ggml ops, built from the same patched ggml on both
ends, so they compute the same remotely.

The protocol has no authentication: a server listens on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import sys
import weakref
from typing import Dict, List, Optional, Sequence, Union

from .. import _core

logger = logging.getLogger("selfextend_gguf")

DEFAULT_PORT = 50052
CONNECT_TIMEOUT_S = 5.0
# a free server answers the handshake at once; one serving another client answers only when
# that client leaves (llama.cpp's rpc-server serves one client at a time)
HANDSHAKE_TIMEOUT_S = 10.0
RPC_CMD_HELLO = 14
HELLO_CAPS_SIZE = 24

# endpoint -> the objects of this process that hold a connection to it (their model's buffers)
_holders: Dict[str, "weakref.WeakSet"] = {}


def parse_servers(value: Union[str, Sequence[str]]) -> List[str]:
    """"host:port,host:port" (llama.cpp's --rpc and llama_cpp's rpc_servers) as a list."""
    items = value.split(",") if isinstance(value, str) else list(value)
    servers = [s.strip() for s in items if s and s.strip()]
    if not servers:
        raise ValueError("rpc_servers must name at least one server as host:port")
    for s in servers:
        host, _, port = s.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"RPC server {s!r} is not host:port (for example 127.0.0.1:{DEFAULT_PORT})")
    return servers


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        data += chunk
    return data


def _check_reachable(endpoint: str) -> None:
    """Connect and shake hands within seconds, so that a server that is down or busy is a
    clear error here instead of a wait in llama.cpp (whose socket waits much longer)."""
    host, _, port = endpoint.rpartition(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
    except OSError as err:
        raise ConnectionError(f"cannot reach the RPC server {endpoint} ({err}); start one there with "
                              f"`selfextend-gguf rpc-server --port {port}`") from err
    with sock:
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            sock.sendall(struct.pack("<BQ", RPC_CMD_HELLO, HELLO_CAPS_SIZE) + bytes(HELLO_CAPS_SIZE))
            _recv_exactly(sock, 8)
        except socket.timeout:
            raise ConnectionError(
                f"the RPC server {endpoint} did not answer within {HANDSHAKE_TIMEOUT_S:.0f} s: it is serving "
                f"another client (an rpc-server serves one client at a time; start one server per client "
                f"process)") from None
        except OSError as err:
            raise ConnectionError(f"the RPC server {endpoint} closed the connection during the handshake "
                                  f"({err})") from err


def hold(owner: object, servers: Sequence[str]) -> None:
    """Note that owner (a model with layers there) keeps connections to servers open until it
    is freed: the handshake check is skipped for them, as they serve this process already."""
    for endpoint in servers:
        _holders.setdefault(endpoint, weakref.WeakSet()).add(owner)


def _held(endpoint: str) -> bool:
    return len(_holders.get(endpoint, ())) > 0


def add_servers(servers: Sequence[str]) -> List[str]:
    """Connect to the servers (a clear error within seconds if one cannot be reached) and
    return the names of their devices."""
    names: List[str] = []
    for endpoint in servers:
        if not _held(endpoint):
            _check_reachable(endpoint)
        try:
            names += _core.rpc_add_server(endpoint)
        except _core.LlamaCppError as err:
            raise ConnectionError(f"RPC server {endpoint}: {err}") from err
    return names


def model_devices(servers: Optional[Sequence[str]]) -> Optional[List[str]]:
    """The devices a model may use: this machine's accelerators and the given servers'
    devices. None (llama.cpp's default: every device) when no RPC server was ever added in
    this process, so that one Llama's servers never serve another Llama."""
    remote = add_servers(servers) if servers else []
    every_rpc = set(_core.rpc_device_names())
    if not servers and not every_rpc:
        return None
    local = [d["name"] for d in _core.devices(memory=False) if d["type"] != "cpu" and d["name"] not in every_rpc]
    return local + remote


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, threads: int = 1, cache_dir: Optional[str] = None,
          devices: Sequence[str] = ()) -> None:
    """Offer this machine's devices (default: the CPU) to RPC clients; runs until killed."""
    if not 0 < port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    if not _is_loopback(host):
        print(f"selfextend-gguf rpc-server: WARNING: listening on {host}: the RPC protocol has no "
              f"authentication and no encryption, so anyone who can reach this port can run computations "
              f"here and read what is sent. Use it only on a network you trust.", file=sys.stderr, flush=True)
    _core.rpc_start_server(f"{host}:{port}", cache_dir or "", int(threads), list(devices))
