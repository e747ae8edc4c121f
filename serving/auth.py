"""Bearer-token check for the API blueprints (``SKEWLESS_API_TOKEN``; none configured = open)."""

from __future__ import annotations

import hmac

from flask import current_app, request

from serving.errors import unauthorized


def require_token() -> None:
    token = current_app.config.get("API_TOKEN")
    if not token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), str(token).encode()
    ):
        raise unauthorized()
