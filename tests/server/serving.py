"""``sap-viz serve``'s app on a free loopback port, in a thread, with the uvicorn config the command uses (``serve.http``)."""

from __future__ import annotations

import socket
import threading
import time

import openai
import uvicorn

from sap_viz.serve.http import HEAD_TIMEOUT_S, server_config


class Server:
    """The app on a free loopback port, in a thread, until ``close``."""

    def __init__(self, app, head_timeout_s: float = HEAD_TIMEOUT_S):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(server_config(app, "127.0.0.1", self.port, head_timeout_s, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)

    def client(self, key: str = "no-key", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=120, **kwargs)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
