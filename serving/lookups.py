"""The batch tasks' GET routes: an entity's nightly score, by key lookup in Redis.

Batch scoring (models/batch_score.py) writes one hash per entity, ``skewless:<task>:<entity id>``,
with the task's score column, ``model_version`` and ``score_date``. Every batch task declared in
skewless/features.py gets its route here (churn_30d: ``GET /v1/customers/<customer_id>/churn``).
"""

from __future__ import annotations

from flask import Blueprint

from serving.auth import require_token
from serving.errors import ApiError, response
from serving.schemas import InvalidInput
from serving.sidecar import sidecar
from skewless.tasks import Task, batch

MAX_ID_LENGTH = 128

bp = Blueprint("lookups", __name__)
bp.before_request(require_token)


def nightly_score(task: Task, entity_id: str, field: str) -> dict:
    """The latest batch score of ``entity_id`` as the lookup route answers it; a 404 naming
    ``field`` when there is none."""
    stored = task.stored_score(sidecar().redis.hgetall(f"{task.scores_key_prefix}{entity_id}"))
    if stored is None:
        raise ApiError(
            404,
            {"error": f"no {task.name} score for {task.entity.name} {entity_id!r}", "field": field},
        )
    return {
        task.entity.join_key: entity_id,
        task.score_column: stored[task.score_column],
        "score_date": stored["score_date"],
        "model": {"name": sidecar().lookup_models[task.name], "version": stored["model_version"]},
    }


def _view(task: Task):
    key = task.entity.join_key

    def lookup(**path: str):
        entity_id = path[key]
        if len(entity_id) > MAX_ID_LENGTH:
            raise InvalidInput(key, f"longer than {MAX_ID_LENGTH} characters")
        return response(200, nightly_score(task, entity_id, key))

    return lookup


for _task in batch():
    bp.add_url_rule(_task.route, endpoint=_task.name, view_func=_view(_task), methods=["GET"])
