"""End to end on simulated data: real dbt build, real `feast apply`, materialization into a real Redis.

- the dbt feature tables equal the Python evaluator of the declaration, window by window;
- Feast's point-in-time retrieval over fraud_v1 / churn_v1 reproduces the dbt training sets;
- after materialization, get_online_features returns exactly each entity's latest dbt row.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest

from skewless import pipeline, settings, warehouse
from skewless.features import GROUPS, Grain, group
from tests.featurecheck import mismatches, same

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(built_pipeline, redis_db):
    redis_url = redis_db
    with pytest.MonkeyPatch.context() as mp:
        built_pipeline.env(mp)
        cfg = settings.load()
        con = warehouse.connect(cfg.warehouse_path, read_only=True)
        tables = {
            name: con.execute(f"select * from {name}").fetchdf()
            for name in [g.name for g in GROUPS]
            + ["stg_raw__transactions", "fraud_training_set", "churn_training_set"]
        }
        con.close()
        cutoff = pd.Timestamp(built_pipeline.cutoff)
        pipeline.materialize(cfg, end=built_pipeline.cutoff, redis_url=redis_url)
        store = pipeline.feature_store(cfg, redis_url)
        yield {"cfg": cfg, "tables": tables, "store": store, "cutoff": cutoff}


def _records(frame: pd.DataFrame) -> list[dict]:
    out = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in out:
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                row[key] = value.to_pydatetime()
    return out


@pytest.mark.parametrize("name", [g.name for g in GROUPS])
def test_dbt_tables_equal_the_python_evaluator(built, name):
    events = _records(built["tables"]["stg_raw__transactions"])
    rows = _records(built["tables"][name])
    # every snapshot / recent row, plus a random sample of the rest (the evaluator is O(n) per row)
    random.Random(0).shuffle(rows)
    sample = rows[:400] + [r for r in rows[400:] if r["event_timestamp"] == built["cutoff"]]
    assert len(sample) >= 100
    assert mismatches(group(name), sample, events) == []


def _compare(expected: pd.DataFrame, actual: pd.DataFrame, keys: list[str], names: list[str]):
    merged = expected.merge(actual, on=keys, suffixes=("", "__feast"), validate="one_to_one")
    assert len(merged) == len(expected)
    bad = [
        (row[keys[0]], name, row[name], row[f"{name}__feast"])
        for row in _records(merged)
        for name in names
        if not same(row[name], row[f"{name}__feast"])
    ]
    assert bad == []


def test_point_in_time_retrieval_reproduces_the_fraud_training_set(built):
    store, training = built["store"], built["tables"]["fraud_training_set"]
    assert len(training) > 1000
    entity_df = training[["transaction_id", "customer_id", "merchant_id", "event_timestamp"]].copy()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].dt.tz_localize("UTC")
    retrieved = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("fraud_v1")
    ).to_df()
    retrieved["event_timestamp"] = retrieved["event_timestamp"].dt.tz_convert(None)
    names = (
        group("customer_transaction_windows").feature_names
        + group("merchant_transaction_windows").feature_names
    )
    _compare(
        training,
        retrieved.drop(columns=["customer_id", "merchant_id", "event_timestamp"]),
        ["transaction_id"],
        names,
    )


def test_point_in_time_retrieval_reproduces_the_churn_training_set(built):
    store, training = built["store"], built["tables"]["churn_training_set"]
    assert len(training) > 100
    entity_df = training[["customer_id", "event_timestamp"]].copy()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].dt.tz_localize("UTC")
    retrieved = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("churn_v1")
    ).to_df()
    retrieved["event_timestamp"] = retrieved["event_timestamp"].dt.tz_convert(None)
    _compare(
        training,
        retrieved,
        ["customer_id", "event_timestamp"],
        group("customer_daily_activity").feature_names,
    )


@pytest.mark.parametrize("name", [g.name for g in GROUPS])
def test_online_features_equal_the_latest_dbt_row(built, name):
    g = group(name)
    key = g.entity.join_key
    table = built["tables"][name]
    latest = table[table["event_timestamp"] == built["cutoff"]]
    if g.grain is Grain.TRANSACTION:
        latest = latest[latest["is_snapshot"]]
    # every entity's latest row is the one at the cutoff
    assert latest[key].nunique() == table[key].nunique() == len(latest)
    online = (
        built["store"]
        .get_online_features(
            features=[f"{name}:{f}" for f in g.feature_names],
            entity_rows=[{key: k} for k in latest[key]],
        )
        .to_df()
    )
    _compare(latest[[key, *g.feature_names]], online, [key], g.feature_names)
