"""JSON errors for everything: 400 {error, field}, 401, 404, 413, 503 {error, reason}.

Anything a client sends ends in a 4xx; dependency failures (Redis, no model, streaming consumer)
in a 503 with a reason; only a bug is a 500.
"""

from __future__ import annotations

import logging

import orjson
import redis
from flask import Flask, current_app
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from serving.log import JSON_OPTIONS
from serving.model import ModelUnavailable
from serving.readers import FeaturesUnavailable
from serving.schemas import BODY, InvalidInput

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(body.get("error"))
        self.status = status
        self.body = body
        self.headers = headers or {}


def unauthorized() -> ApiError:
    return ApiError(
        401,
        {"error": "missing or invalid bearer token", "field": "Authorization"},
        {"WWW-Authenticate": 'Bearer realm="skewless"'},
    )


def unavailable(reason: str) -> ApiError:
    return ApiError(503, {"error": "service unavailable", "reason": reason})


def response(status: int, body: dict, headers: dict | None = None):
    """A JSON answer (orjson: compact, ~10x faster than json.dumps on a scored request)."""
    return current_app.response_class(
        orjson.dumps(body, option=JSON_OPTIONS),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return response(exc.status, exc.body, exc.headers)

    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput):
        return response(400, {"error": str(exc), "field": exc.field})

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError):
        log.warning("redis unavailable: %s", exc)
        return response(503, {"error": "service unavailable", "reason": f"redis: {exc}"})

    @app.errorhandler(ModelUnavailable)
    def _no_model(exc: ModelUnavailable):
        return response(503, {"error": "service unavailable", "reason": f"model: {exc}"})

    @app.errorhandler(FeaturesUnavailable)
    def _no_features(exc: FeaturesUnavailable):
        return response(503, {"error": "service unavailable", "reason": str(exc)})

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return response(413, {"error": f"request body exceeds {limit} bytes", "field": BODY})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        # keep headers such as Allow (405); the body becomes JSON
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        body = {"error": exc.description or exc.name, "field": None}
        return response(exc.code or 500, body, headers)

    @app.errorhandler(Exception)
    def _bug(exc: Exception):
        log.exception("unhandled error")
        return response(500, {"error": "internal error"})
