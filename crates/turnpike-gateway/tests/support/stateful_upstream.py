"""A stateful MCP server on the Python SDK's Streamable HTTP transport (its default: a
session per client, `400 Missing session ID` to a request without one), for the gateway's
tests. Binds 127.0.0.1:0 and prints `PORT <n>` once listening; ends when stdin closes."""

import socket
import sys
import threading
import os

import uvicorn
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("stateful", log_level="WARNING")


@mcp.tool()
def echo(text: str) -> str:
    """Echoes text."""
    return f"echo {text}"


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    app = mcp.streamable_http_app(json_response=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    def watch_stdin() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
