"""The skew report's HTML page (monitoring/skew_html.py) in a real headless browser: Debian's chromium
driven by selenium through Debian's chromedriver (`make setup` installs both).

The page of the planted report of test_skew.py is opened from a file:// URL; the test checks the
browser console, the title, every section heading, the tables' rows, that every plot decoded, and
keeps a full-page screenshot in ``$SKEWLESS_VAR_DIR/test-artifacts/skew_report.png`` (the project's
var/ unless the variable is set before the tests start). Nothing is downloaded: the driver's path is
given, so selenium-manager never runs, and chromium's background networking is off.
"""

from __future__ import annotations

import base64
import copy
import io
from pathlib import Path

import pytest

from monitoring import skew, skew_html
from skewless import settings
from tests.helpers import BROWSER_WIDTH, INSTALL_HINT, missing_binaries
from tests.monitoring import test_skew

pytestmark = pytest.mark.slow  # on the built pipeline (dbt, Feast, MLflow) and a browser

# fixtures shared with test_skew.py
env = test_skew.env
day_truth = test_skew.day_truth
planted = test_skew.planted

# Read at import, before any fixture points SKEWLESS_VAR_DIR at a temporary copy.
SCREENSHOT = settings.get("SKEWLESS_VAR_DIR") / "test-artifacts" / "skew_report.png"
HEADINGS = {
    "summary": "Summary",
    "quality": "Quality: served vs offline scores",
    "decisions": "Decisions at the threshold",
    "causes": "Causes of mismatching feature values",
    "lags": "Served age per feature group",
    "features": "Features",
    "score": "Score drift",
    "examples": "The three tables",
}
WIDTH = BROWSER_WIDTH

# What the page looks like to the browser: per section its heading, tables (body rows and rendered
# height) and images; every image's decode state; the page's size and text length.
_PAGE_STATE = """
const box = e => e.getBoundingClientRect();
return {
  readyState: document.readyState,
  title: document.title,
  sections: [...document.querySelectorAll('section')].map(s => ({
    id: s.id,
    heading: (s.querySelector('h2') || {}).innerText,
    subheadings: [...s.querySelectorAll('h3')].map(h => h.innerText),
    tables: [...s.querySelectorAll('table')].map(t => ({
      rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
      height: box(t).height,
    })),
  })),
  images: [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
    shown: box(i).width,
  })),
  figures: [...document.querySelectorAll('figure')].map(f => {
    const b = box(f); return [b.left, b.top, b.right, b.bottom];
  }),
  textLength: document.body.innerText.trim().length,
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
};
"""


def test_chromium_and_chromedriver_are_installed():
    """Fails, not skips, on a machine without them, and says how to get them."""
    missing = missing_binaries()
    assert missing == [], f"{', '.join(missing)} not found. {INSTALL_HINT}"


def render_page(report: dict, path: Path) -> Path:
    path.write_text(skew_html.render(report), encoding="utf-8")
    return path


def open_page(driver, path: Path) -> tuple[dict, list[dict]]:
    """Loads the page; returns its state (_PAGE_STATE) and the console's SEVERE entries."""
    driver.get_log("browser")  # drop whatever an earlier page left
    driver.get(path.as_uri())
    state = driver.execute_script(_PAGE_STATE)
    return state, [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def check_state(state: dict, severe: list[dict], report: dict) -> None:
    """What a reader must see."""
    assert severe == [], f"browser console errors: {severe}"

    assert state["readyState"] == "complete"
    assert state["title"] == f"skewless skew report: {report['mode']} mode, {report['date']}"
    sections = {s["id"]: s for s in state["sections"]}
    assert {k: s["heading"] for k, s in sections.items()} == HEADINGS

    for name, section in sections.items():
        assert section["tables"], f"no table in section {name}"
        for table in section["tables"]:
            assert table["rows"] >= 1 and table["height"] > 0, (name, table)
    features = sections["features"]["tables"][0]
    assert features["rows"] == len(report["features"])
    assert sections["decisions"]["tables"][0]["rows"] == 1
    assert sections["lags"]["tables"][0]["rows"] == len(report["lags"])
    classic = sections["examples"]
    assert classic["subheadings"] == list(skew.example_tables(report)), "the three tables"
    rows = [t["rows"] for t in classic["tables"]]
    assert rows == [len(report["examples"]["impact"])] * 3, f"the three tables: {rows}"

    plots = 3 + skew_html.PLOTTED_FEATURES + 2  # quality, decisions, causes; features; score
    assert len(state["images"]) == plots
    broken = [i["alt"] for i in state["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == [], f"images that did not load: {broken}"
    assert all(i["shown"] > 0 for i in state["images"])
    for i, a in enumerate(state["figures"]):  # plots side by side, none over another
        for b in state["figures"][i + 1 :]:
            overlap = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
            assert min(overlap) <= 0.5, (a, b)
    assert state["textLength"] > 1000
    assert state["scrollWidth"] <= state["clientWidth"], "the page scrolls sideways"


def check_page(driver, path: Path, report: dict) -> None:
    check_state(*open_page(driver, path), report)


def full_page_png(driver) -> bytes:
    """The whole page, not just the window (Chrome DevTools Page.captureScreenshot)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    return base64.b64decode(shot["data"])


@pytest.fixture
def report(planted):
    return skew.skew_report(cfg=planted[0])


def test_the_report_page_renders_in_chromium(browser, report, tmp_path):
    from PIL import Image

    state, severe = open_page(browser, render_page(report, tmp_path / "report.html"))
    png = full_page_png(browser)  # kept before the checks: a failure leaves its picture
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
    check_state(state, severe, report)

    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width >= WIDTH - 20 and image.height > 2000, image.size
    # not blank: many distinct colours (text, table shading, both plot colours)
    assert len(image.getcolors(maxcolors=1 << 20) or []) > 200
    assert SCREENSHOT.stat().st_size > 50_000


def test_the_checks_fail_on_a_broken_plot_a_missing_table_or_file(browser, report, tmp_path):
    """The checks above are not vacuous: each tampered copy of a good page fails its own one."""
    good = render_page(report, tmp_path / "good.html").read_text(encoding="utf-8")
    start = good.index("base64,") + len("base64,")
    last_table = good[good.rindex("<table>") : good.rindex("</table>") + len("</table>")]
    tampered = {  # name: (page, what the failure says)
        "broken_plot": (
            good[:start] + "bm90IGEgcG5n" + good[start + 12 :],  # "not a png"
            "images that did not load",
        ),
        "missing_table": (
            good.replace("<h3>prediction impact</h3>", "").replace(last_table, ""),
            "the three tables",
        ),
        "missing_file": (
            good.replace("</body>", '<img src="missing.png" alt="x"></body>'),
            "browser console errors: .*missing.png",
        ),
    }
    for name, (page, message) in tampered.items():
        assert page != good, name
        path = tmp_path / f"{name}.html"
        path.write_text(page, encoding="utf-8")
        with pytest.raises(AssertionError, match=message):
            check_page(browser, path, report)


def test_a_wide_table_scrolls_inside_the_page(browser, report, tmp_path):
    """Real reports show many features in the three tables: a table wider than the window
    scrolls in its own box, never the page."""
    wide = copy.deepcopy(report)
    shown = wide["examples"]["features"]
    for i in range(40):  # forty more columns in the first two tables
        name = f"padding_feature_with_a_long_name_{i}"
        shown.append(name)
        for row in (*wide["examples"]["training"], *wide["examples"]["serving"]):
            row[name] = 123456.789
    state, _ = open_page(browser, render_page(wide, tmp_path / "wide.html"))
    assert state["scrollWidth"] <= state["clientWidth"], "the page scrolls sideways"
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#examples table')].map(t => t.scrollWidth)"
    )
    assert max(widths) > WIDTH  # the table itself is wider than the window
