"""A fleet's host that can be stopped and started again mid-run, for the shared-tail tests.

Whichever `CloudServer` is up takes each new connection; with none up, opening reads as a dead
link, which the edge retries with backoff. Each (re)connection gets a fresh in-process stream
(`socket_pair`), as a real edge gets a fresh TCP connection.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from edge_runtime.bundle import load_bundle
from edge_runtime.link import LinkConfig, LinkError
from edge_runtime.link.transports import socket_pair
from host.cloud.server import CloudServer


class RestartingHost:
    """`start()` a shared-tail host on `state_dir` (again after `stop()`: it resumes from its
    checkpoint); `open_` is the edges' opener. `server_options` go to every CloudServer."""

    def __init__(
        self, bundle_dir: Path, state_dir: Path, config: LinkConfig, **server_options: Any
    ) -> None:
        self.bundle = load_bundle(bundle_dir)
        self.state_dir = state_dir
        self.config = config
        self.server_options = {"shared_tail": True, "checkpoint_every": 3, **server_options}
        self.server: CloudServer | None = None
        self.lock = threading.Lock()

    def start(self) -> CloudServer:
        server = CloudServer(
            self.bundle,
            self.state_dir,
            key=self.bundle.key(),
            config=self.config,
            **self.server_options,
        )
        with self.lock:
            self.server = server
        return server

    def stop(self) -> CloudServer:
        with self.lock:
            server, self.server = self.server, None
        assert server is not None
        server.stop()
        return server

    def open_(self) -> object:
        with self.lock:
            if self.server is None:
                raise LinkError("host down")
            edge_end, host_end = socket_pair(self.config.read_timeout)
            self.server.serve_transport(host_end)
            return edge_end
