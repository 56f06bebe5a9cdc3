"""`textgen serve`: the models kept loaded behind an HTTP API (see docs/serving.md)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading

from textgen.errors import ConfigError
from textgen.requests import ServeRequest
from textgen.serve.app import create_app, load_models

__all__ = ["create_app", "serve", "bind", "check_host"]


def check_host(request: ServeRequest) -> None:
    """Refuse to listen beyond this machine without an API key."""
    host = request.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and request.api_key is None:
        raise ConfigError(f"--host {host} lets other machines in; add --api-key KEY (clients send it as a Bearer "
                          f"token), or listen on 127.0.0.1")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: any free port); a ConfigError when it is taken."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # the protocol named (IPPROTO_TCP, not 0): asyncio sets TCP_NODELAY only on such connections, and
        # without it each response's body waits for the client's delayed ACK of its headers (40 ms)
        sock = socket.socket(family, kind, protocol)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port "
                          f"(0: any free one) or --host") from None
    return sock


def serve(request: ServeRequest) -> None:
    """Load the models, listen, and answer until interrupted; one line on stderr says where."""
    import uvicorn  # only the server pays for it

    check_host(request)
    sock = bind(request.host, request.port)
    try:
        app = create_app(request, load_models(request))
        port = sock.getsockname()[1]
        where = f"[{request.host}]" if ":" in request.host else request.host
        if threading.current_thread() is threading.main_thread():
            # A shell starts `textgen serve &` with Ctrl-C ignored, and uvicorn takes it over only once it
            # runs: without this, an interrupt just after the line below would be lost and the server run on.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"textgen serve: listening on http://{where}:{port} (models: {', '.join(dict.fromkeys(request.model))})",
              file=sys.stderr)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
        server.run(sockets=[sock])
    finally:
        sock.close()
