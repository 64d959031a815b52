"""The REST API (api.md §2-§5): a thin Starlette translation layer over :class:`mncore.Runtime`.

Routes are split by concept (``system``, ``jobs``, ``streams``, ``bundles``, ``resources``); each
module exports ``ENDPOINTS``, from which both the routes and the OpenAPI document are built.
"""

from __future__ import annotations

from .app import create_app, endpoints

__all__ = ["create_app", "endpoints"]
