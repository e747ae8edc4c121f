"""The Airflow path as a user walks it: `skewless airflow standalone`, the REST API, the UI in a browser.

On small simulated data (history imported, the last day staged in the drop folder) `skewless
airflow standalone` runs in its own process group on a free port and a private var/ (SQLite
metadata DB, LocalExecutor, a real Redis). Over the REST API, with the documented credentials,
every DAG is unpaused and `ingest` triggered for the staged day; its assets start the chain
through the real scheduler to `skew_report`. Checked: every run of the chain succeeds, works on
the staged day (its conf or its asset event's extra) and lasts minutes, not the months a fake
start date shows; no run or task failed anywhere (the scheduled `ingest` run for today waits for
its file instead). Then Debian's chromium logs in through the login page and opens the DAG list
(the six DAGs with the tags they declare), the triggered run in its DAG's grid (green, real
duration) and the asset graph (every DAG and asset of the chain). Screenshots are kept in
``$SKEWLESS_VAR_DIR/test-artifacts/airflow_*.png``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from skewless import airflow_api, importer, ingest, orchestration, processes, settings, simulate
from skewless.demo import DAGS
from tests.helpers import PLACEMENT_VARS, free_port

pytestmark = pytest.mark.slow

DAY = date(2025, 4, 14)  # the last simulated day, staged for ingest
USER, PASSWORD = "admin", "admin"  # the documented login of the embedded setup
# Read at import, before any fixture points SKEWLESS_VAR_DIR at a temporary directory.
ARTIFACTS = settings.get("SKEWLESS_VAR_DIR") / "test-artifacts"


@pytest.fixture(scope="module")
def chain(tmp_path_factory, redis_db):
    """`skewless airflow standalone` on staged data, the chain triggered and followed to its end."""
    base = tmp_path_factory.mktemp("airflow-ui")
    with pytest.MonkeyPatch.context() as mp:
        for key in [*orchestration.airflow_env(), *PLACEMENT_VARS]:
            mp.delenv(key, raising=False)
        mp.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", raising=False)
        mp.setenv("SKEWLESS_VAR_DIR", str(base / "var"))
        mp.setenv("REDIS_URL", redis_db)
        mp.setenv("AIRFLOW__API__PORT", str(free_port()))
        cfg = settings.load()
        frame = simulate.generate(customers=400, days=100, seed=11, start=date(2025, 1, 5))
        assert frame["event_timestamp"].max().date() == DAY
        days = frame["event_timestamp"].dt.date
        importer.import_transactions(simulate.write(frame[days < DAY], base / "history.parquet"))
        ingest.stage_days(frame[days == DAY], cfg)

        log = base / "standalone.log"
        skewless = str(Path(sys.executable).parent / "skewless")
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [skewless, "airflow", "standalone"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            url = orchestration.api_url(dict(os.environ))
            airflow_api.wait_healthy(url, {"standalone": proc}, base, timeout=240)
            client = airflow_api.Client(url, USER, PASSWORD)
            run_id = f"ui_test__{DAY}"
            runs = airflow_api.run_chain(client, DAGS, DAY.isoformat(), run_id, timeout=900)
            yield {"url": url, "client": client, "runs": runs, "run_id": run_id, "log": log}
        finally:
            processes.stop_group(proc)
            assert not processes.group_alive(proc.pid)


def test_the_triggered_chain_runs_green_through_the_scheduler(chain):
    client, runs = chain["client"], chain["runs"]
    states = {run.dag_id: run.state for run in runs}
    assert states == dict.fromkeys(DAGS, "success"), (states, chain["log"])
    for run in runs:
        assert run.day == DAY.isoformat(), run  # the conf, then the asset events' extra
        assert 0 < run.seconds < 3600, run  # real start and end times
        assert set(run.tasks) <= {"success", "skipped"}, run
    assert runs[0].run_id == chain["run_id"]
    assert [r.run_id.split("__")[0] for r in runs[1:]] == ["asset_triggered"] * (len(DAGS) - 1)

    failed_runs = client.call("GET", "/dags/~/dagRuns", state="failed")["total_entries"]
    failed_tasks = client.call("GET", "/dags/~/dagRuns/~/taskInstances", state="failed")
    assert (failed_runs, failed_tasks["total_entries"]) == (0, 0)
    # unpausing @daily ingest scheduled today's interval: it waits for that day's file
    scheduled = client.runs("ingest", run_type="scheduled")
    assert {run["state"] for run in scheduled} <= {"queued", "running"}, scheduled


def _wait_text(driver, text: str, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By

    def body(d):
        shown = d.find_element(By.TAG_NAME, "body").text
        return shown if text in shown else False

    # the page may re-render (a redirect, a refresh) between finding the body and reading it
    return _wait(driver, timeout).until(body)


def _wait(driver, timeout: float):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver, timeout, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,)
    )


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"airflow_{name}.png"))


def _tags_shown(lines: list[str], dag_id: str) -> set[str]:
    """On the DAG list, a DAG's card reads: its id, its tags (comma lines between), `Schedule`."""
    start = lines.index(dag_id) + 1
    return set(lines[start : lines.index("Schedule", start)]) - {","}


def _seconds(text: str) -> float:
    """The run page's `Duration` (HH:MM:SS.fff; longer runs show days first and fail here)."""
    found = re.search(r"Duration\n(\d+):(\d\d):(\d\d(?:\.\d+)?)\n", text)
    assert found, f"no HH:MM:SS duration on the run page:\n{text[:1500]}"
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_the_ui_shows_the_dags_the_green_run_and_the_asset_graph(chain, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    url, client = chain["url"], chain["client"]
    browser.get(f"{url}/")
    _wait_text(browser, "Sign into Airflow")
    browser.find_element(By.NAME, "username").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(browser, 60).until(lambda d: "/auth/login" not in d.current_url)

    browser.get(f"{url}/dags")
    text = _wait_text(browser, f"{len(DAGS)} Dags")
    _shot(browser, "dags")
    lines = text.splitlines()
    declared = {d: {t["name"] for t in dag["tags"]} for d, dag in client.dags().items()}
    assert {d: _tags_shown(lines, d) for d in DAGS} == {d: declared[d] for d in DAGS}
    assert all("skewless" in tags for tags in declared.values())

    browser.get(f"{url}/dags/ingest/runs/{chain['run_id']}")
    _wait_text(browser, "Duration")
    text = _wait_text(browser, "land")
    _shot(browser, "ingest_run")
    assert f"{chain['run_id']}\nSuccess" in text
    assert "Run Type\nManual" in text
    assert 0 < _seconds(text) < 3600
    assert {"wait_for_data", "land"} <= set(text.splitlines())

    raw = client.call("GET", "/assets", uri_pattern=orchestration.RAW_URI)["assets"][0]
    browser.get(f"{url}/assets/{raw['id']}")
    assets = {
        orchestration.RAW_URI,
        orchestration.FEATURES_URI,
        *orchestration.MODEL_URIS.values(),
        orchestration.PREDICTIONS_URI,
    }
    seen: dict = {}

    def graph(d):  # every DAG and asset drawn (nodes re-render while the graph lays out)
        nodes = d.find_elements(By.CSS_SELECTOR, ".react-flow__node")
        seen["shown"] = {line for node in nodes for line in node.text.splitlines()}
        return set(DAGS) | assets <= seen["shown"]

    with contextlib.suppress(TimeoutException):  # the assertion below names what was drawn
        _wait(browser, 60).until(graph)
    _shot(browser, "asset_graph")
    assert set(DAGS) | assets <= seen["shown"], seen["shown"]
