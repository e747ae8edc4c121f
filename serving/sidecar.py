"""The sidecar's resources as a Flask extension (``init_app``) and the scoring path itself.

Set up once per app: the Redis pool (short socket timeouts, at most one immediate reconnect - no
retry storm), the champion model, the exact-mode state, one feature reader per mode, the metrics.
Closed at exit (and by ``close()``). The scoring path is Flask-free (``Sidecar.score``) so replay
and benchmarks can drive it in-process too.
"""

from __future__ import annotations

import atexit
import logging
import math
import time
from datetime import UTC, datetime, timedelta

import redis
from flask import Flask, current_app

from models.config import model_config
from models.datasets import feature_columns
from serving import log as serving_log
from serving.metrics import Metrics
from serving.model import ChampionModel
from serving.readers import make_reader
from serving.redisio import client, round_trips
from serving.schemas import Decision, ScoreRequest
from serving.state import ExactState
from skewless import modes, redis_server, stream
from skewless import settings as settings_module
from skewless.feast_layout import feast_project
from skewless.features import request_features
from skewless.schemas import EVENT_KEYS
from skewless.tasks import batch as batch_tasks
from skewless.tasks import get_task, realtime_task

logger = logging.getLogger(__name__)


def _clean(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


class Sidecar:
    def __init__(self, app: Flask | None = None):
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        conf = app.config
        self.cfg = conf.get("SETTINGS") or settings_module.load()
        url = conf.get("REDIS_URL") or redis_server.resolve_url(
            self.cfg.redis_url, self.cfg.redis_dir, start_if_needed=False
        )
        self.redis_url = url
        self.redis = client(
            url,
            float(conf["REDIS_TIMEOUT"]),
            float(conf["REDIS_CONNECT_TIMEOUT"]),
            cluster=self.cfg.redis_cluster,
        )
        self.round_trip = round_trips(self.redis)
        self.metrics = Metrics(reports=self.cfg.var_dir / "reports")
        self.task = realtime_task().name
        # the batch tasks' registered model names, read once (the lookups answer with them)
        self.lookup_models = {
            t.name: model_config(self.cfg, t.name)["registered_model"] for t in batch_tasks()
        }
        self.service = get_task(self.task).service
        self.columns = feature_columns(self.task)
        self.model = ChampionModel(
            self.cfg, self.task, self.columns, float(conf["MODEL_CHECK_SECONDS"])
        )
        self.model.on_change = self.metrics.model_changed
        self.state = ExactState(
            self.redis,
            self.service,
            self.round_trip,
            lateness=timedelta(seconds=float(conf["EXACT_LATENESS_SECONDS"])),
        )
        project, key_version = feast_project(self.cfg.feast_repo)
        if key_version != 3:
            raise ValueError(
                f"feature_store.yaml: entity_key_serialization_version {key_version} != 3"
            )
        self.readers = {
            name: make_reader(name, self.round_trip, self.service, project, self.state)
            for name in modes.NAMES
        }
        self.default_mode = str(conf["SERVING_MODE"])
        self.record_events = bool(conf["RECORD_EVENTS"])
        self.log_maxlen = int(conf["SERVING_LOG_MAXLEN"])
        self.event_stream_maxlen = int(conf["EVENT_STREAM_MAXLEN"])
        if conf["LOAD_MODEL"]:
            self.model._refresh_quietly()
            self.model._next_check = time.monotonic() + self.model.check_seconds
        app.extensions["skewless"] = self
        atexit.register(self.close)

    def close(self) -> None:
        self.round_trip.close()
        self.redis.close()
        pool = getattr(self.redis, "connection_pool", None)  # a RedisCluster closes its nodes
        if pool is not None:
            pool.disconnect()

    # -- readiness ---------------------------------------------------------------------------------
    def not_ready(self) -> str | None:
        """Why the sidecar cannot serve now, or None."""
        try:
            if self.cfg.redis_cluster:  # every primary: each holds a share of the keys
                self.redis.ping(target_nodes=self.redis.PRIMARIES)
            else:
                self.redis.ping()
        except redis.RedisError as exc:
            return f"redis: {exc}"
        if self.model.current is None:
            return f"model: {self.model.error}"
        if modes.mode(self.default_mode).consumer and not self.redis.exists(stream.STATUS_KEY):
            return (
                f"streaming consumer not running (no {stream.STATUS_KEY}): start "
                "`skewless stream-consumer`"
            )
        return None

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, request: ScoreRequest, mode: str, request_id: str, started: float) -> dict:
        """Features (one round trip), model, then the event (exact-mode state and event stream)
        and the log entry (one round trip)."""
        self.model.maybe_refresh()
        model = self.model.get()
        reader = self.readers[mode]
        read_started = time.perf_counter()
        read = reader.read(request)
        read_seconds = time.perf_counter() - read_started
        values = read.values
        values.update(request_features(request.amount, request.event_timestamp, values))
        features = {name: _clean(values[name]) for name in self.columns}
        probability = model.predict(features)
        decision = Decision.DECLINE if probability >= model.threshold else Decision.APPROVE
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        ids = {key: getattr(request, key) for key in EVENT_KEYS}
        entry = {
            "request_id": request_id,
            **ids,
            "amount": request.amount,
            "event_timestamp": request.event_timestamp.isoformat(),
            "served_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            "mode": mode,
            "features": features,
            "features_missing": read.missing,
            "feature_timestamps": read.as_of,
            "model_name": model.name,
            "model_version": model.version,
            "fraud_probability": probability,
            "decision": decision.value,
            "latency_ms": latency_ms,
        }
        writes = [serving_log.xadd_command(entry, maxlen=self.log_maxlen)]
        if self.record_events:
            # The scored transaction is an event that has now arrived (label unknown): into the
            # exact-mode state and onto the event stream. The sidecar has no clock in replay time,
            # so the entry's arrival is its event time; the consumer's watermark places it.
            event = {
                **ids,
                "event_timestamp": request.event_timestamp,
                "amount": request.amount,
            }
            writes[:0] = self.state.add_event_commands(event)
            writes.append(stream.xadd_command(event, maxlen=self.event_stream_maxlen))
        self.round_trip(*writes)
        self.metrics.observe_scoring(mode, read_seconds, decision.value)
        return {
            "transaction_id": request.transaction_id,
            "request_id": request_id,
            "fraud_probability": probability,
            "decision": decision.value,
            "model": {"name": model.name, "version": model.version},
            "mode": mode,
            "features": features,
            "features_missing": read.missing,
            "latency_ms": latency_ms,
        }


def sidecar() -> Sidecar:
    return current_app.extensions["skewless"]
