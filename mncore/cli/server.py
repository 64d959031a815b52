"""``mn server``: run the node daemon (REST API, job recovery, graceful drain on SIGTERM)."""

from __future__ import annotations

import click


@click.command("server")
@click.option("--host", default=None, help="REST bind address (default MN_API_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="REST port (default MN_API_PORT, 4000).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=None, help="gRPC port (default MN_GRPC_PORT).")
def server(host: str | None, port: int | None, grpc_port: int | None) -> int:
    """Run this node's daemon until SIGTERM (exit 0 after the drain)."""
    from server.node import main  # the daemon lives beside the library, not inside it

    return main(host=host, port=port, grpc_port=grpc_port)
