"""The OpenAPI 3.1 document of the sidecar, generated from the models of serving/schemas.py."""

from __future__ import annotations

import re

from pydantic.json_schema import models_json_schema

from serving.queries import ROUTE as PREDICT_ROUTE
from serving.schemas import (
    LOOKUP_RESPONSES,
    ErrorResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    ScoreRequest,
    ScoreResponse,
    UnavailableResponse,
    camel,
)
from skewless.tasks import Task, realtime_task
from skewless.tasks import batch as batch_tasks

_COMPONENTS = (
    ScoreRequest,
    ScoreResponse,
    *LOOKUP_RESPONSES.values(),
    PredictRequest,
    PredictResponse,
    ErrorResponse,
    UnavailableResponse,
    HealthResponse,
    ReadyResponse,
)


def _json(ref: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _path(route: str) -> str:
    """An OpenAPI path from a Flask route: ``<customer_id>`` -> ``{customer_id}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def _errors(bearer_token: bool) -> dict:
    """The error responses of the API operations (a 401 only with a bearer token)."""
    errors = {
        "400": _json(
            "ErrorResponse", "Malformed input: `field` points at it (a JSON Pointer in the body)"
        ),
        "401": _json("ErrorResponse", "Missing or wrong bearer token"),
        "413": _json("ErrorResponse", "Request body too large"),
        "503": _json("UnavailableResponse", "A dependency is down (Redis, model)"),
    }
    if not bearer_token:
        del errors["401"]
    return errors


def _score_path(security: dict, errors: dict) -> dict:
    """The realtime task's scoring route."""
    return {
        _path(realtime_task().route): {
            "post": {
                "operationId": f"score{camel(realtime_task().name)}",
                "summary": "Score one transaction",
                **security,
                "parameters": [
                    {
                        "name": "X-Request-ID",
                        "in": "header",
                        "required": False,
                        "description": "The request's id in the response and the serving log"
                        " when it matches ^[A-Za-z0-9._:-]{1,64}$; any other value is replaced"
                        " by a generated id",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    **_json("ScoreRequest", "The transaction"),
                },
                "responses": {"200": _json("ScoreResponse", "Scored"), **errors},
            }
        }
    }


def _predict_path(security: dict, errors: dict) -> dict:
    """POST /v1/predict: a predictive query of one or more ids."""
    return {
        PREDICT_ROUTE: {
            "post": {
                "operationId": "predict",
                "summary": "Run a predictive query of one or more ids (PREDICT ... FOR ... = / IN)",
                **security,
                "requestBody": {"required": True, **_json("PredictRequest", "The query")},
                "responses": {
                    "200": _json("PredictResponse", "One prediction per id"),
                    "404": _json("ErrorResponse", "An id has no batch score"),
                    **errors,
                },
            }
        }
    }


def _lookup_operation(task: Task, security: dict, errors: dict) -> dict:
    key = task.entity.join_key
    return {
        "get": {
            "operationId": f"get{camel(task.name)}Score",
            "summary": f"The nightly batch {task.name} score of a {task.entity.name}",
            **security,
            "parameters": [
                {
                    "name": key,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 128},
                }
            ],
            "responses": {
                "200": _json(LOOKUP_RESPONSES[task.name].__name__, "The latest batch score"),
                "404": _json("ErrorResponse", f"No batch score for this {task.entity.name}"),
                **{k: v for k, v in errors.items() if k != "413"},
            },
        }
    }


def _service_paths(errors: dict) -> dict:
    """Health, readiness, metrics and this document: no token needed."""
    return {
        "/healthz": {
            "get": {
                "operationId": "liveness",
                "summary": "Liveness: the process answers",
                "responses": {"200": _json("HealthResponse", "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Readiness: Redis reachable and a model loaded",
                "responses": {
                    "200": _json("ReadyResponse", "Ready"),
                    "503": errors["503"],
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi(
    title: str = "skewless sidecar", version: str = "1", *, bearer_token: bool = False
) -> dict:
    """The OpenAPI 3.1 document of the sidecar, generated from the models of serving/schemas.py.

    It follows the configuration: with ``bearer_token`` (a token is configured) the API operations
    require a bearer token and declare their 401; without, they declare neither."""
    _, defs = models_json_schema(
        [(model, "validation") for model in _COMPONENTS],
        ref_template="#/components/schemas/{model}",
    )
    errors = _errors(bearer_token)
    security: dict = {"security": [{"bearer": []}]} if bearer_token else {}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Fraud scoring at authorization time, batch-score lookups and"
            " predictive queries of given ids.",
        },
        "paths": {
            **_score_path(security, errors),
            **_predict_path(security, errors),
            **{
                _path(task.route): _lookup_operation(task, security, errors)
                for task in batch_tasks()
            },
            **_service_paths(errors),
        },
        "components": {
            "schemas": defs["$defs"],
            **(
                {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
                if bearer_token
                else {}
            ),
        },
    }
