"""Runs the whole batch path under the extended declaration (tests/extension/declaration.py) and
prints what each step produced, as JSON. Started by test_extension.py in a process of its own, with
SKEWLESS_DECLARATION, SKEWLESS_VAR_DIR, SKEWLESS_DBT_PROJECT (a copy) and SKEWLESS_MODEL_CONFIG set:
the declaration is read once, when the first module imports it."""

from __future__ import annotations

import json
import os
import sys
from datetime import date

from skewless import dbtgen, importer, orchestration, pipeline, settings, simulate, warehouse
from skewless.features import GROUPS, TASKS


def main(redis_url: str) -> dict:
    cfg = settings.load()
    out: dict = {"groups": [g.name for g in GROUPS], "tasks": list(TASKS)}

    # raw events with the new entity's key: three customers share a device
    frame = simulate.generate(customers=150, days=45, seed=7, start=date(2025, 3, 1))
    number = frame["customer_id"].str.lstrip("c").astype(int)
    frame["device_id"] = "d" + (number // 3).astype(str).str.zfill(4)
    path = simulate.write(frame, cfg.var_dir / "raw" / "transactions.parquet")
    out["imported"] = importer.import_transactions(path)["rows_loaded"]

    # dbt models of the declaration, then dbt build and feast apply
    written = dbtgen.write(cfg.dbt_project_dir)
    out["dbtgen"] = sorted(str(p.relative_to(cfg.dbt_project_dir)) for p in written)
    pipeline.build(cfg, redis_url=redis_url)
    con = warehouse.connect(cfg.warehouse_path, read_only=True)
    try:
        out["tables"] = {
            name: con.execute(f"select count(*) from {name}").fetchone()[0]
            for name in ("device_daily_activity", "device_dormant_7d_training_set")
        }
        out["labels"] = dict(
            con.execute(
                "select is_dormant_7d::int, count(*) from device_dormant_7d_training_set group by 1"
            ).fetchall()
        )
    finally:
        con.close()
    store = pipeline.feature_store(cfg, redis_url)
    out["feast"] = {
        "entities": sorted(e.name for e in store.list_entities()),
        "views": sorted(v.name for v in store.list_feature_views()),
        "services": sorted(s.name for s in store.list_feature_services()),
    }

    # Airflow, on this var/: the DAG files as the dag-processor parses them
    os.environ.update(orchestration.airflow_env(cfg))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.PROJECT_ROOT / "dags"))
    out["dag_import_errors"] = {k: v[-300:] for k, v in bag.import_errors.items()}
    out["dags"] = sorted(bag.dag_ids)
    batch = bag.dags["batch_score"]
    out["batch_score_tasks"] = sorted(batch.task_ids)

    # train, register, batch-score; the sidecar answers the lookup route
    from models import batch_score, training

    trained = training.train("device_dormant_7d", cfg=cfg)
    out["trained"] = {"version": str(trained["model_version"]), "promoted": trained["promoted"]}
    day = batch_score.last_event_day(cfg)
    scored = batch_score.score("device_dormant_7d", day, cfg=cfg, redis_url=redis_url)
    out["scored"] = {"rows": scored["rows"], "keys": scored["redis"]["keys_written"]}

    from serving.app import create_app

    app = create_app(
        {"SETTINGS": cfg, "REDIS_URL": redis_url, "LOAD_MODEL": False, "MODEL_CHECK_SECONDS": 0}
    )
    try:
        client = app.test_client()
        out["routes"] = sorted(str(rule) for rule in app.url_map.iter_rules())
        out["lookup"] = client.get("/v1/devices/d0001/dormant").get_json()
        out["unknown"] = client.get("/v1/devices/nobody/dormant").status_code
        out["openapi_paths"] = sorted(client.get("/openapi.json").get_json()["paths"])
    finally:
        app.extensions["skewless"].close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
