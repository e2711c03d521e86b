"""`gen report`: one self-contained HTML page per bundle (and rows), checked as text here and
in a real browser (Debian's chromium through chromium-driver) where the machine has one."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.runtime import InputError, load
from gen.runtime.report import report_html, write_report

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


class Page(HTMLParser):
    """The parts of a page the tests read: ids, image sources, links, scripts, table rows."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.urls, self.scripts, self.rows = set(), [], [], 0, []
        self._table, self._row = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
            if tag == "table":
                self._table = attrs["id"]
        for key in ("src", "href", "action"):
            if key in attrs:
                self.urls.append(attrs[key])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and self._table == "scores":
            self._row = []
        if tag == "td" and self._row is not None:
            self._row.append(attrs.get("data-value"))

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            self.rows.append(self._row)
        if tag == "tr":
            self._row = None
        if tag == "table":
            self._table = None


def png_size(uri: str) -> tuple[int, int]:
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def digit_rows(digits_rows, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "digits.npy"
    np.save(path, digits_rows[:1000])
    return path


@pytest.fixture(scope="module")
def table_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """A PCA on a table whose column names hold markup, and rows with a few far off."""
    pandas = pytest.importorskip("pandas")
    from gen import fit

    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    names = ["<b>bold</b>", "amount & fee", "x2", "x3"]
    rows = rng.normal(size=(400, 4)).astype(np.float32)
    run = fit(pandas.DataFrame(rows, columns=names), model="pca", out=folder / "run")
    bundle = run.export(folder / "bundle")
    test = rng.normal(size=(200, 4)).astype(np.float32)
    test[:5, 1] += 12.0  # five rows far off in "amount & fee"
    path = folder / "rows.csv"
    np.savetxt(path, test, delimiter=",", header=",".join(names), comments="", fmt="%.6f")
    return bundle, path


def test_the_page_of_an_image_detector_has_every_section_and_its_figures(bundles, digit_rows):
    model = load(bundles["ae"], device="cpu")
    text = report_html(model, digit_rows, top_k=6, table_rows=50)
    page = Page(text)
    assert {"card", "calibration", "samples", "rows", "top", "table", "scores", "flagged-count", "drift"} <= page.ids
    rows = np.load(digit_rows)
    scores = model.score(rows)
    flagged = int((scores > model.threshold).sum())
    assert re.search(rf'<strong id="flagged-count">{flagged:,}</strong> of 1,000 rows flagged', text)
    # the table: the 50 highest scores, highest first, row numbers as in the file
    order = np.lexsort((np.arange(len(scores)), -scores))[:50]
    assert [int(r[0]) for r in page.rows] == order.tolist()
    np.testing.assert_allclose([float(r[1]) for r in page.rows], scores[order], rtol=1e-6)
    assert all(u.startswith("data:") for u in page.urls)  # nothing fetched from anywhere
    assert page.scripts == 1 and len(text.encode()) < 2 << 20
    widths = [png_size(src) for src in page.images]  # the sample grid and the anomaly maps decode
    assert len(widths) == 2 and all(w > 0 and h > 0 for w, h in widths)
    assert f"threshold {model.threshold:.4g}" in text.replace("The threshold", "threshold")


def test_a_table_page_escapes_its_names_and_lists_the_largest_errors(table_bundle):
    bundle, rows = table_bundle
    model = load(bundle, device="cpu")
    text = report_html(model, rows, top_k=5, table_rows=20, samples=0)
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text and "amount &amp; fee" in text
    page = Page(text)
    assert page.scripts == 1 and "samples" not in page.ids and "top" in page.ids
    top_rows = sorted(int(r[0]) for r in page.rows[:5])
    assert top_rows == [0, 1, 2, 3, 4]  # the five rows put far off come first
    assert text.count("amount &amp; fee (") >= 5  # named first among each one's largest errors


def test_pages_without_rows_show_samples_and_completion_bundles_their_ratings(bundles):
    gan = Page(report_html(load(bundles["gan"], device="cpu"), samples=16))
    assert {"card", "samples"} <= gan.ids and "rows" not in gan.ids and len(gan.images) == 1
    adagan = load(bundles["adagan"], device="cpu")
    mixture = Page(report_html(adagan, samples=9))  # the mixture, then each component
    assert len(mixture.images) == 1 + len(adagan.manifest.sampler.graphs) >= 3
    assert all(png_size(src)[0] > 0 for src in mixture.images)
    autorec = Page(report_html(load(bundles["autorec"], device="cpu")))
    assert "completion" in autorec.ids and "calibration" not in autorec.ids


def test_a_completion_page_on_a_ratings_file_ranks_items_for_its_first_users(bundles, tmp_path):
    from dataclasses import replace

    from gen.runtime.completion import Completer
    from gen.runtime.ratings import read_ratings
    from gen.trainer.data import lowrank

    table = lowrank(seed=0).table
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n" + "".join(f"{u},{i},{r:g}\n" for u, i, r in
                                                   zip(table.users[:2000], table.items[:2000], table.ratings[:2000])))
    model = load(bundles["autorec"], device="cpu")
    text = report_html(model, path, top_k=3)
    assert 'id="ranked"' in text and "2,000 ratings by" in text
    top = Completer(model, read_ratings(path)).top_k(3)  # what `gen complete --top-k 3` gives
    first = str(top.users[0])
    mine = top.users.astype(str) == first
    top = replace(top, items=top.items[mine], prediction=top.prediction[mine])
    expected = ", ".join(f"{i} ({r:.2f})" for i, r in zip(top.items, top.prediction))
    assert f"<tr><td>{first}</td><td>{expected}</td></tr>" in text


def test_the_top_rows_follow_top_k_whatever_the_table_holds(bundles, digit_rows):
    model = load(bundles["ae"], device="cpu")
    page = Page(text := report_html(model, digit_rows, top_k=3, table_rows=0, samples=0))
    assert "Top 3 rows by score" in text and "scores" not in page.ids
    width, height = png_size(page.images[0])
    assert height == width  # three lines of three tiles: input, reconstruction and error map
    table = Page(report_html(model, digit_rows, top_k=0, table_rows=7, samples=0))
    assert "top" not in table.ids and len(table.rows) == 7


def test_scores_that_are_not_numbers_are_counted_not_charted(bundles, digits_rows, tmp_path):
    rows = digits_rows[:40].copy()
    rows[3] = 1e30  # the autoencoder's score overflows to a non-finite number
    np.save(tmp_path / "x.npy", rows)
    model = load(bundles["ae"], device="cpu")
    assert not np.isfinite(model.score(rows[3:4])).all()
    text = report_html(model, tmp_path / "x.npy", samples=0)
    assert '<strong id="not-finite">1</strong> rows have a score that is not a finite number' in text
    assert "median score nan" not in text


def test_a_ratings_chart_has_one_bar_per_value_even_with_values_missing(bundles, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n1,1,1\n1,2,2\n2,1,5\n2,3,5\n3,2,2\n")
    text = report_html(load(bundles["autorec"], device="cpu"), path, top_k=0)
    bars = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="[\d.]+"><title>rating', text)
    assert len(bars) == 3 and len(set(bars)) == 1  # ratings 1, 2 and 5: three bars of one width
    assert 'id="ranked"' not in text  # --top-k 0: no ranking


def test_the_same_page_for_the_same_inputs(bundles, digit_rows):
    model = load(bundles["ae"], device="cpu")
    assert report_html(model, digit_rows, seed=3) == report_html(model, digit_rows, seed=3)


def test_gen_report_writes_the_page_and_refuses_in_one_line(bundles, digit_rows, tmp_path):
    out = tmp_path / "r.html"
    result = gen("report", bundles["ae"], digit_rows, "--out", out, "--top-k", 4, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["out"] == str(out) and summary["bytes"] == out.stat().st_size
    for args, message in (
            (["--out", tmp_path / "r.csv"], "--out {}: expected an .html file".format(tmp_path / "r.csv")),
            (["--out", tmp_path / "p.html", "--top-k", 65], "--top-k: expected an integer from 0 to 64, got 65"),
            (["--out", Path(bundles["ae"]) / "r.html"], "is inside the bundle folder")):
        result = gen("report", bundles["ae"], *args)
        assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    bad = tmp_path / "wide.npy"
    np.save(bad, np.zeros((10, 65), dtype=np.float32))
    result = gen("report", bundles["ae"], bad, "--out", tmp_path / "bad.html")
    assert result.exit_code == 2 and "wide.npy" in result.output and not (tmp_path / "bad.html").exists()
    (tmp_path / "folder.html").mkdir()
    result = gen("report", bundles["ae"], "--out", tmp_path / "folder.html")
    assert result.exit_code == 2 and result.output.startswith(f"error: {tmp_path / 'folder.html'}: cannot write")
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(InputError, match="--samples: expected an integer from 0 to 256"):
        write_report(load(bundles["ae"], device="cpu"), tmp_path / "x.html", samples=1000)
    assert not (tmp_path / "x.html").exists()


# -- in a real browser ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chrome is None or driver is None:
        pytest.skip("no chromium and chromium-driver here (make test installs them with apt-get as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (gen[test])")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    from selenium.common.exceptions import WebDriverException

    try:
        session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    except WebDriverException as exc:  # installed but cannot start here (a driver of another version, ...)
        pytest.skip(f"chromium does not start here: {str(exc).strip().splitlines()[0]}")
    yield session
    session.quit()


def screenshots(tmp_path: Path) -> Path:
    """Where the browser tests leave their screenshots: $GEN_SCREENSHOTS, else the test's folder."""
    folder = Path(os.environ.get("GEN_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_report_in_a_browser_decodes_its_images_and_sorts_its_table(browser, bundles, digit_rows, tmp_path):
    from selenium.webdriver.common.by import By

    model = load(bundles["ae"], device="cpu")
    path = write_report(model, tmp_path / "report.html", digit_rows, table_rows=40)
    browser.set_window_size(1280, 1000)
    browser.get(path.resolve().as_uri())
    for section in ("card", "calibration", "samples", "rows", "top", "table"):
        assert browser.find_element(By.ID, section).is_displayed()
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 2 and all(browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img) for img in images)
    flagged = int((model.score(np.load(digit_rows)) > model.threshold).sum())
    assert browser.find_element(By.ID, "flagged-count").text == f"{flagged:,}"

    def column(index: int) -> list[float]:
        return [float(cell.get_attribute("data-value")) for cell in
                browser.find_elements(By.CSS_SELECTOR, f"#scores tbody tr td:nth-child({index})")]

    scores = column(2)
    assert scores == sorted(scores, reverse=True) and len(scores) == 40
    header = browser.find_element(By.CSS_SELECTOR, "#scores th:nth-child(1)")
    header.click()
    assert column(1) == sorted(column(1)) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert column(1) == sorted(column(1), reverse=True)
    browser.find_element(By.CSS_SELECTOR, "#scores th:nth-child(2)").click()
    assert column(2) == sorted(scores)
    browser.save_screenshot(str(screenshots(tmp_path) / "report-1280.png"))
    browser.set_window_size(390, 844)  # a phone: the page reflows, nothing wider than the screen
    browser.get(path.resolve().as_uri())
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    browser.save_screenshot(str(screenshots(tmp_path) / "report-390.png"))
