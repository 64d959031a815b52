"""Compatibility shim: scripts written against the original SDK import ``Client`` from ``mn_sdk``."""

from __future__ import annotations

from mncore.sdk import AsyncClient, AuthError, Client, PermissionDeniedError, RpcError

__all__ = ["AsyncClient", "AuthError", "Client", "PermissionDeniedError", "RpcError"]
