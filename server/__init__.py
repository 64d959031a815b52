"""The node daemon: thin adapters (REST, later gRPC) over :class:`mncore.Runtime`.

- :mod:`server.node`     ``mn server``: settings → runtime → servers, signals, sd_notify
- :mod:`server.rest`     the Starlette app (``create_app(runtime, settings)``)
- :mod:`server.errors`   the one table: exception class → HTTP status, gRPC code
- :mod:`server.systemd`  sd_notify datagrams
"""
