"""The declared tasks: each is complete (config, training set, route) and a wrong one is refused."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from models.config import model_config
from skewless import settings, tasks
from skewless.features import FEATURE_SERVICES
from skewless.tasks import TASKS, Serving


def test_every_task_has_its_config_training_set_and_a_route_of_its_own():
    cfg = settings.load()
    training = settings.PROJECT_ROOT / "dbt_project" / "models" / "marts" / "training"
    for task in TASKS.values():
        assert model_config(cfg, task.name)["feature_service"] == task.service.name
        assert (training / f"{task.training_set}.sql").exists(), task.training_set
    routes = [task.route for task in TASKS.values()]
    assert len(set(routes)) == len(routes)
    assert tasks.names() == ["fraud", "churn_30d", "churn"]


def test_names_and_aliases_resolve_and_unknown_names_say_the_choices():
    assert tasks.get_task("churn") is TASKS["churn_30d"]
    assert tasks.get_task(TASKS["fraud"]) is TASKS["fraud"]
    with pytest.raises(ValueError, match=r"task='nope': expected one of \['fraud'"):
        tasks.get_task("nope")


def test_a_task_whose_features_do_not_fit_its_serving_is_refused():
    daily = next(s for s in FEATURE_SERVICES if s.name == "churn_v1")
    with pytest.raises(ValueError, match="realtime tasks need transaction feature groups"):
        dataclasses.replace(TASKS["fraud"], service=daily)
    with pytest.raises(ValueError, match="a batch task needs a label_horizon and active_within"):
        dataclasses.replace(TASKS["churn_30d"], label_horizon=None)
    with pytest.raises(ValueError, match="must hold <customer_id>"):
        dataclasses.replace(TASKS["churn_30d"], route="/v1/churn")


def test_the_sidecar_serves_exactly_one_realtime_task(monkeypatch):
    assert tasks.realtime_task() is TASKS["fraud"]
    second = dataclasses.replace(TASKS["fraud"], name="fraud_b", route="/v1/fraud_b/score")
    monkeypatch.setitem(TASKS, "fraud_b", second)
    with pytest.raises(ValueError, match=r"one realtime task; declared: \['fraud', 'fraud_b'\]"):
        tasks.realtime_task()
    assert [t.name for t in tasks.batch()] == ["churn_30d"]
    assert TASKS["churn_30d"].serving is Serving.BATCH
    assert TASKS["churn_30d"].label_horizon == timedelta(days=30)


def test_a_declaration_that_does_not_hold_together_is_refused(tmp_path):
    from skewless import features as F

    entities, groups, services = F.ENTITIES, F.GROUPS, F.FEATURE_SERVICES
    tasks_ = tuple(TASKS.values())
    F.check(entities, groups, services, tasks_)  # the project's own holds
    with pytest.raises(ValueError, match=r"entity declared twice: \['customer'\]"):
        F.check((*entities, F.CUSTOMER), groups, services, tasks_)
    with pytest.raises(ValueError, match=r"entity 'merchant' not in ENTITIES"):
        F.check((F.CUSTOMER,), groups, services, tasks_)
    with pytest.raises(ValueError, match=r"group 'customer_daily_activity' not in GROUPS"):
        F.check(entities, groups[:2], services, tasks_)
    with pytest.raises(ValueError, match=r"service 'churn_v1' not in FEATURE_SERVICES"):
        F.check(entities, groups, services[:1], tasks_)
    renamed = dataclasses.replace(TASKS["fraud"], name="fraud_copy")
    with pytest.raises(ValueError, match=r"route declared twice: \['/v1/fraud/score'\]"):
        F.check(entities, groups, services, (*tasks_, renamed))
    merchant = next(g for g in groups if g.name == "merchant_transaction_windows")
    risk = next(a for a in merchant.aggregates if a.offset)
    hourly = dataclasses.replace(risk, name="merchant_risk_1h_back", offset="1h")
    off_hop = dataclasses.replace(merchant, aggregates=(*merchant.aggregates, hourly))
    with pytest.raises(ValueError, match=r"offset='1h' is not a whole number of window '30d'"):
        F.check(entities, [off_hop if g is merchant else g for g in groups], services, tasks_)
    with pytest.raises(FileNotFoundError, match="SKEWLESS_DECLARATION="):
        F.load_extension(tmp_path / "missing.py")
