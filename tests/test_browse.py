"""The results browser: the loader's joins on both layouts, the page's embedded data, and the page
itself in headless Chromium (filters, summary against the report's winrates.parquet, search)."""

from __future__ import annotations

import base64
import gzip
import json
import re

import pyarrow.parquet as pq
import pytest
from browse_fixture import write_artifacts
from headless import chromium, missing_reason, screenshot, wait_state

from bpo.browse import BrowseInputError, build_browse, load_rows
from bpo.browse.page import encode, render
from bpo.language import UNDETERMINED, known_codes

TESTSETS = {"vicuna": 24, "dolly": 17}
TARGETS = ["standin", "small"]


def _winrates(paths, out_dir):
    """winrates.parquet as the workflow's report stage computes it (bpo.eval.report)."""
    from bpo.eval.report import build_report
    from bpo.settings import load_config
    from bpo.settings.evaluate import ReportSettings

    settings = ReportSettings.from_config(load_config(overrides={"eval": {"report": {"bootstrap_samples": 200}}}))
    out = {
        k: out_dir / name
        for k, name in [
            ("table", "winrates.parquet"),
            ("summary", "summary.md"),
            ("plot", "winrates.png"),
            ("compare", "compare.png"),
            ("intrinsic", "intrinsic.json"),
        ]
    }
    build_report(
        paths["judgments"],
        paths["answers"],
        paths["optimized"],
        settings,
        out_table=out["table"],
        out_summary=out["summary"],
        out_plot=out["plot"],
        out_compare_plot=out["compare"],
        out_intrinsic=out["intrinsic"],
    )
    return out["table"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Artifacts in the workflow's layout, their report, and the browse page built from both."""
    root = tmp_path_factory.mktemp("browse")
    paths = write_artifacts(root, TESTSETS, ["trained"], TARGETS, layout="new", seed=3)
    winrates = _winrates(paths, root / "report")
    html = root / "report" / "browse.html"
    build_browse(paths["optimized"], paths["answers"], paths["judgments"], [winrates], html)
    return {"paths": paths, "winrates": winrates, "html": html}


def _embedded(html_path) -> dict:
    blob = re.search(
        r'<script id="bpo-data" type="application/octet-stream">([^<]*)</script>', html_path.read_text()
    ).group(1)
    return json.loads(gzip.decompress(base64.b64decode(blob)))


def test_rows_and_page_data(demo):
    rows = load_rows(demo["paths"]["optimized"], demo["paths"]["answers"], demo["paths"]["judgments"])
    assert len(rows) == sum(TESTSETS.values()) * len(TARGETS)
    assert {r.optimizer for r in rows} == {"trained"}
    judged = {
        (r["testset"], r["target"], r["item_id"]): r
        for p in demo["paths"]["judgments"]
        for r in pq.read_table(p).to_pylist()
    }
    for r in rows:
        j = judged[(r.testset, r.target, r.item_id)]
        assert (r.outcome, r.raw_optimized_first, r.verdict_original_first) == (
            j["outcome"],
            j["raw_optimized_first"],
            j["verdict_original_first"],
        )
        assert r.len_original == len(r.answer_original.split())
    data = _embedded(demo["html"])
    assert len(data["rows"]) == len(rows) and len(data["strings"]) == len(set(data["strings"]))
    f = {name: i for i, name in enumerate(data["fields"])}
    first = data["rows"][0]
    assert data["strings"][first[f["question_optimized"]]] == rows[0].question_optimized
    assert first[f["len_optimized"]] == rows[0].len_optimized
    assert {(w["testset"], w["target"], w["optimizer"]) for w in data["winrates"]} == {
        (ts, tg, "trained") for ts in TESTSETS for tg in TARGETS
    }


def test_new_layout_optimizer_and_category(tmp_path):
    paths = write_artifacts(tmp_path, {"bpo_test": 6}, ["trained", "identity"], ["standin"], layout="new")
    rows = load_rows(paths["optimized"], paths["answers"], paths["judgments"])
    assert len(rows) == 12 and {r.optimizer for r in rows} == {"trained", "identity"}
    assert all(r.category and r.protocol == "both_orders" for r in rows)
    identity = [r for r in rows if r.optimizer == "identity"]
    assert all(r.outcome == "tie" and r.question_optimized == r.question_original for r in identity)
    # the identity optimizer's answers repeat the original ones: stored once in the page
    data = encode(rows, [])
    assert len(data["strings"]) < 12 * 7
    # each row carries the language of its original prompt, a filter of the page
    assert {r.language for r in rows} <= known_codes() | {UNDETERMINED} and all(r.language for r in rows)
    assert "language" in data["fields"] and 'id="f-language"' in render(data, "t")


def test_rows_that_do_not_join_are_an_error(tmp_path):
    paths = write_artifacts(tmp_path, {"vicuna": 3}, ["trained"], ["standin"])
    with pytest.raises(BrowseInputError, match=r"answers\.parquet: 3 answered item\(s\) have no judgment"):
        load_rows(paths["optimized"], paths["answers"], [])
    with pytest.raises(BrowseInputError, match=r"judgments\.parquet: item 'vicuna-0000' .* no row in the optimized"):
        load_rows([], paths["answers"], paths["judgments"])
    bad = tmp_path / "bad.parquet"
    pq.write_table(pq.read_table(paths["answers"][0]).drop(["backend"]), bad)
    with pytest.raises(BrowseInputError, match=r"bad\.parquet: missing columns \['backend'\]"):
        load_rows(paths["optimized"], [bad], paths["judgments"])


# ---- the page in headless Chromium ---------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def _select(driver, name: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", f"f-{name}")).select_by_value(value)


def _summary(driver) -> dict:
    return driver.execute_script("return Object.assign({}, document.getElementById('summary').dataset)")


def _shown(driver) -> list[tuple[str, str]]:
    return [
        (a.get_attribute("data-item"), a.get_attribute("data-outcome"))
        for a in driver.find_elements("css selector", "article.row")
    ]


def test_page_filters_summary_and_search(browser, demo):
    driver = browser
    driver.get(demo["html"].as_uri())
    wait_state(driver, "ready")
    assert driver.get_log("browser") == []  # no script error
    total = sum(TESTSETS.values()) * len(TARGETS)
    assert int(_summary(driver)["n"]) == total and len(_shown(driver)) == 50  # first page of rows
    assert "from the offline stand-in" in driver.find_element("id", "summary").text
    screenshot(driver, "browse.png")
    first = driver.find_element("css selector", "article.row")
    original_q, optimized_q = first.find_elements("css selector", "p.q")
    row0 = load_rows(demo["paths"]["optimized"], demo["paths"]["answers"], demo["paths"]["judgments"])[0]
    assert (original_q.text, optimized_q.text) == (row0.question_original, row0.question_optimized)
    added = " ".join(e.text for e in optimized_q.find_elements("css selector", "ins"))
    assert row0.question_optimized.split(". ", 1)[1] in added  # the rewrite's addition is marked

    # one slice of the report: the summary shows its numbers
    w = next(
        r for r in pq.read_table(demo["winrates"]).to_pylist() if (r["testset"], r["target"]) == ("dolly", "small")
    )
    for name, value in (("testset", "dolly"), ("optimizer", "trained"), ("target", "small")):
        _select(driver, name, value)
    s = _summary(driver)
    assert (int(s["n"]), int(s["invalid"])) == (w["n"], w["n_invalid"])
    for key, col in (("win", "win"), ("tie", "tie"), ("lose", "lose"), ("deltaWr", "delta_wr")):
        assert float(s[key]) == pytest.approx(w[col])
    assert "report: ΔWR" in driver.find_element("id", "summary").text  # the report's interval, shown

    # losing rows only: as many as the report's lose share implies, each one a loss
    _select(driver, "outcome", "lose")
    shown = _shown(driver)
    assert len(shown) == round(w["lose"] * (w["n"] - w["n_invalid"]) / 100) > 0
    assert {o for _, o in shown} == {"lose"} and int(_summary(driver)["n"]) == len(shown)
    assert float(_summary(driver)["lose"]) == 100.0

    # free-text search finds a known item by a phrase of its answer
    driver.find_element("id", "reset").click()
    known = pq.read_table(demo["paths"]["answers"][0]).to_pylist()[5]
    phrase = " ".join(known["answer_optimized"].split()[3:9])
    driver.find_element("id", "search").send_keys(phrase)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: int(_summary(d)["n"]) < total)
    items = {i for i, _ in _shown(driver)}
    assert known["item_id"] in items and len(items) <= 2
