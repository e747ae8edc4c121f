"""Liveness, readiness, Prometheus metrics and the OpenAPI document (no token needed)."""

from __future__ import annotations

from flask import Blueprint, current_app

from serving.errors import response
from serving.sidecar import sidecar

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return response(200, {"status": "ok"})


@bp.get("/readyz")
def readyz():
    app = sidecar()
    reason = app.not_ready()
    if reason:
        return response(503, {"error": "not ready", "reason": reason})
    model = app.model.current
    return response(
        200,
        {
            "status": "ready",
            "mode": app.default_mode,
            "model": {"name": model.name, "version": model.version},
        },
    )


@bp.get("/metrics")
def metrics():
    body, content_type = sidecar().metrics.render()
    return current_app.response_class(body, mimetype=None, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    return response(200, current_app.config["OPENAPI"])
