"""Request and response schemas, declared once (pydantic) and published as OpenAPI 3.1
(serving/openapi.py builds the document from them).

Requests are validated strictly: extra fields are forbidden, numbers must be finite JSON numbers
(no strings, no booleans), amounts >= 0, timestamps ISO 8601 strings of a real date in 1970-2099
(``TIMESTAMP_PATTERN``, published as the field's pattern; a time without offset is UTC). The
features object is generated from the feature declaration, so the published schema lists exactly
the features the fraud model consumes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from models.datasets import feature_columns
from skewless import modes
from skewless.features import REQUEST_FEATURES
from skewless.schemas import EVENT_KEYS
from skewless.tasks import Task, realtime_task
from skewless.tasks import batch as batch_tasks

# An event time as written: a real calendar date of 1970-2099 (leap days in leap years only), a
# time to the second with up to 6 decimals, an optional offset (none: UTC). The server checks this
# pattern before parsing, and the OpenAPI document publishes it, so what the document calls valid
# is exactly what the server accepts.
_LEAP_YEAR = r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26]))"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
TIMESTAMP_PATTERN = (
    rf"^(?:(?:19[7-9][0-9]|20[0-9][0-9])-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


# The declared serving modes (skewless/modes.py) as the API's enum.
Mode = StrEnum("Mode", {name.upper(): name for name in modes.NAMES})


class Decision(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"


def _written_timestamp(value: Any) -> Any:
    """A string matching ``TIMESTAMP_PATTERN``, parsed; anything else is left to pydantic's strict
    datetime check (which rejects it)."""
    if not isinstance(value, str):
        return value
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(
            "expected an ISO 8601 date and time of 1970-2099, e.g. 2025-04-15T13:45:00Z"
            " (seconds required, up to 6 decimals, offset optional)"
        )
    return datetime.fromisoformat(value)


def _naive_utc(value: datetime) -> datetime:
    """Aware times are converted to UTC; naive ones are UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=128)]
UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(_written_timestamp),
    AfterValidator(_naive_utc),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TIMESTAMP_PATTERN,
            "description": "ISO 8601 date and time of 1970-2099, e.g. 2025-04-15T13:45:00Z or"
            " 2025-04-15T15:45:00.250+02:00; without an offset it is UTC",
            "examples": ["2025-04-15T13:45:00Z"],
        }
    ),
]


_EXAMPLE = {
    **{key: f"{key.removesuffix('_id')}-00042" for key in EVENT_KEYS},
    "amount": 57.3,
    "event_timestamp": "2025-04-15T13:45:00Z",
}

# One event at authorization time: the declared ids (schemas.EVENT_KEYS), amount, time and mode.
ScoreRequest = create_model(
    "ScoreRequest",
    __config__=ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [_EXAMPLE]},
    ),
    __doc__="One card transaction at authorization time.",
    **{key: (Identifier, ...) for key in EVENT_KEYS},
    amount=(float, Field(ge=0, description="Amount of the transaction (>= 0, finite)")),
    event_timestamp=(UtcTimestamp, ...),
    mode=(
        Mode | None,
        Field(
            default=None, description="Feature mode for this request (default: the server's mode)"
        ),
    ),
)


def _feature_types() -> dict[str, str]:
    service = realtime_task().service
    types = {f.name: f.dtype for g in service.groups for f in g.features}
    types.update({f.name: f.dtype for f in REQUEST_FEATURES})
    return types


def _features_model() -> type[BaseModel]:
    types = _feature_types()
    fields: dict[str, Any] = {
        name: (int | None if types[name] == "int64" else float | None, ...)
        for name in feature_columns(realtime_task().name)
    }
    return create_model(
        "FraudFeatures",
        __config__=ConfigDict(extra="forbid"),
        __doc__="The feature vector the model scored (null: no value, e.g. an empty window).",
        **fields,
    )


FraudFeatures = _features_model()


class ModelRef(BaseModel):
    name: str = Field(description="Registered model name")
    version: str = Field(description="Registered model version that scored")


class ScoreResponse(BaseModel):
    transaction_id: str
    request_id: str = Field(description="X-Request-ID of the request (generated if absent)")
    fraud_probability: float = Field(ge=0, le=1)
    decision: Decision = Field(description="decline when fraud_probability >= the alert threshold")
    model: ModelRef
    mode: Mode
    features: FraudFeatures  # type: ignore[valid-type]
    features_missing: list[str] = Field(
        description="Entities with no online state (scored with empty-history features)"
    )
    latency_ms: float = Field(
        description="Time in the sidecar up to the score: parse, features, model (not the log write)"
    )


MAX_QUERY_IDS = 20  # ids one predictive query may name on the sidecar

# A transaction of a predictive query's realtime form: a ScoreRequest without its mode.
Event = create_model(
    "Event",
    __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
    __doc__="One transaction named by the query, as POST " + realtime_task().route + " takes it.",
    **{key: (Identifier, ...) for key in EVENT_KEYS},
    amount=(float, Field(ge=0, description="Amount of the transaction (>= 0, finite)")),
    event_timestamp=(UtcTimestamp, ...),
)


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"query": "PREDICT churn_30d FOR customers.customer_id IN ('c000042', 'c000043')"},
                {
                    "query": "PREDICT fraud_probability FOR transactions.transaction_id = 't-42'",
                    "events": [{**_EXAMPLE, "transaction_id": "t-42"}],
                },
            ]
        },
    )

    query: str = Field(
        min_length=1,
        max_length=2000,
        description="A predictive query of one or more ids (docs/predict.md): FOR <table>.<key> ="
        f" '<id>' or IN (...), at most {MAX_QUERY_IDS} ids",
    )
    mode: Mode | None = Field(
        default=None, description="Feature mode of realtime scoring (default: the server's mode)"
    )
    events: list[Event] | None = Field(  # type: ignore[valid-type]
        default=None,
        max_length=MAX_QUERY_IDS,
        description="The realtime task's transactions, one per id of the query (the sidecar does"
        " not read the warehouse)",
    )


def camel(name: str) -> str:
    """``churn_30d`` -> ``Churn30d``: model and operation names."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _lookup_model(task: Task) -> type[BaseModel]:
    """The response of a batch task's lookup route (churn_30d: ``Churn30dResponse``)."""
    return create_model(
        f"{camel(task.name)}Response",
        __doc__=f"The latest nightly {task.name} score of a {task.entity.name}.",
        **{
            task.entity.join_key: (str, ...),
            task.score_column: (float, Field(ge=0, le=1)),
            "score_date": (
                str,
                Field(description="The day whose midnight state was scored (batch)"),
            ),
            "model": (ModelRef, ...),
        },
    )


LOOKUP_RESPONSES = {task.name: _lookup_model(task) for task in batch_tasks()}


class PredictResponse(BaseModel):
    query: str
    task: str = Field(description="The declared task the query resolved to")
    path: str = Field(description="realtime (scored now) or lookup (the nightly batch score)")
    predictions: list[Union[(ScoreResponse, *LOOKUP_RESPONSES.values())]] = Field(  # type: ignore[valid-type]  # noqa: UP007
        description="One per id, in the query's order"
    )


FIELD_DESCRIPTION = (
    "The input at fault. In the JSON body: a JSON Pointer (RFC 6901), e.g. `/amount`, `/.` for a"
    ' key named `.`, `/a~1b` for a key `a/b`, `/a~0b` for `a~b`; the empty pointer `""` is the'
    " body as a whole (not JSON, not an object, too large). Outside the body: the name of the"
    " header (`Authorization`) or path parameter (`customer_id`), which never starts with `/`."
)


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": '"amount": Input should be greater than or equal to 0',
                    "field": "/amount",
                },
                {"error": '"a/b": unknown field', "field": "/a~1b"},
            ]
        }
    )

    error: str = Field(description="What is wrong, quoting the key as sent")
    field: str | None = Field(default=None, description=FIELD_DESCRIPTION)


class UnavailableResponse(BaseModel):
    error: str
    reason: str = Field(description="Which dependency is down or not ready")


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    mode: Mode
    model: ModelRef


BODY = ""  # the JSON Pointer to the whole request body


class InvalidInput(ValueError):
    """A request failed validation: ``field`` names the input (see ``FIELD_DESCRIPTION``),
    ``message`` says why; the error text starts with ``where``, the input as the client wrote it."""

    def __init__(self, field: str, message: str, where: str | None = None):
        super().__init__(f"{where or field}: {message}")
        self.field = field
        self.message = message


def json_pointer(loc: tuple) -> str:
    """RFC 6901: each key with ``~`` as ``~0`` and ``/`` as ``~1``, each prefixed by ``/``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def _where(loc: tuple) -> str:
    """The key path as sent, JSON-quoted: ``"amount"``, ``"a/b"``; the body: ``request body``."""
    if not loc:
        return "request body"
    return " in ".join(json.dumps(str(part), ensure_ascii=False) for part in reversed(loc))


def parse_score_request(body: bytes) -> ScoreRequest:
    """Validates a raw JSON body; the first error becomes ``InvalidInput`` naming its field."""
    return _parse(ScoreRequest, body)


def parse_predict_request(body: bytes) -> PredictRequest:
    """``parse_score_request`` for ``POST /v1/predict``."""
    return _parse(PredictRequest, body)


def _parse(model: type[BaseModel], body: bytes):
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        kind = error["type"]
        if kind == "json_invalid":
            message = f"invalid JSON ({error['msg'].removeprefix('Invalid JSON: ')})"
        elif kind == "model_type":
            message = "expected a JSON object"
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        loc = error["loc"]
        raise InvalidInput(json_pointer(loc), message, _where(loc)) from None
