"""GET /v1/customers/<id>/churn: the nightly batch churn score, by key lookup in Redis.

models/batch_score.py writes ``skewless:churn_30d:<customer_id>`` hashes with the fields
``churn_probability``, ``model_version`` and ``score_date``.
"""

from __future__ import annotations

from flask import Blueprint

from models.config import CHURN_KEY_PREFIX, model_config
from serving.auth import require_token
from serving.errors import ApiError, response
from serving.schemas import InvalidInput
from serving.sidecar import sidecar

bp = Blueprint("lookups", __name__, url_prefix="/v1/customers")
bp.before_request(require_token)


@bp.get("/<customer_id>/churn")
def churn(customer_id: str):
    if len(customer_id) > 128:
        raise InvalidInput("customer_id", "longer than 128 characters")
    app = sidecar()
    values = app.redis.hgetall(f"{CHURN_KEY_PREFIX}{customer_id}")
    if not values:
        raise ApiError(
            404, {"error": f"no churn score for customer {customer_id!r}", "field": "customer_id"}
        )
    values = {k.decode(): v.decode() for k, v in values.items()}
    return response(
        200,
        {
            "customer_id": customer_id,
            "churn_probability": float(values["churn_probability"]),
            "score_date": values["score_date"],
            "model": {
                "name": model_config(app.cfg, "churn_30d")["registered_model"],
                "version": values["model_version"],
            },
        },
    )
