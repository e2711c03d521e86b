"""The pages `gen serve` shows (serving/pages.py): each model's report at /ui/NAME behind the
server's token (the header, or the cookie /ui/login sets for a browser), and the form that
scores an uploaded file into the same page; in a real browser where the machine has one."""

from __future__ import annotations

import importlib.util
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest

if importlib.util.find_spec("kserve") is None:
    pytest.skip("gen[serve] not installed", allow_module_level=True)

from gen.runtime import load  # noqa: E402
from tests.cli.test_report import browser, screenshots  # noqa: E402,F401 - the browser fixture
from tests.serving.test_server import Server  # noqa: E402

TOKEN = "pages-token-1"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def call(server, path: str, data: bytes | None = None, headers: dict | None = None):
    """(status, headers, body text) of one request, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(f"http://{server.url}{path}", data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=60) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("pages"), str(bundles["ae"]), "--name", "digits", "--token", TOKEN,
               "--max-body-mb", "0.25")
    yield s
    s.stop()


def test_pages_need_the_token_and_the_cookie_opens_only_the_pages(server):
    status, headers, _ = call(server, "/ui/digits")
    assert status == 303 and headers["location"] == "/ui/login"
    assert call(server, "/ui/login")[0] == 200
    status, _, text = call(server, "/ui/login", urllib.parse.urlencode({"token": "wrong"}).encode())
    assert status == 401 and "wrong token" in text
    body, headers = multipart("token", "big.bin", b"\0" * 10000)  # the open form takes no uploads
    assert call(server, "/ui/login", body, headers)[0] == 400
    assert call(server, "/ui/digits", headers={"Authorization": "Bearer wrong"})[0] == 401  # an API client: no redirect
    status, headers, _ = call(server, "/ui/login", urllib.parse.urlencode({"token": TOKEN}).encode())
    cookie = headers["set-cookie"]
    assert status == 303 and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert TOKEN not in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    status, _, text = call(server, "/ui/digits", headers=jar)
    assert status == 200 and 'id="upload"' in text and 'id="card"' in text
    assert call(server, "/ui/digits", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert call(server, "/v2/models/digits", headers=jar)[0] == 401  # the cookie is no API token
    status, _, text = call(server, "/ui", headers=jar)
    assert status == 200 and "/ui/digits" in text
    assert call(server, "/ui/nothing", headers=jar)[0] == 404


def test_an_upload_is_scored_into_the_page_and_bad_ones_are_one_line(server, bundles, digits_rows, tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    path = tmp_path / "rows.npy"
    np.save(path, digits_rows[:300])
    body, headers = multipart("rows", "rows.npy", path.read_bytes())
    status, _, text = call(server, "/ui/digits", body, {**auth, **headers})
    model = load(bundles["ae"], device="cpu")
    flagged = int(model.flag(digits_rows[:300]).sum())
    assert status == 200 and f'<strong id="flagged-count">{flagged:,}</strong> of 300 rows' in text
    assert "rows.npy" in text and "gen-ui-" not in text  # the user's file name, not the server's temp path
    body, headers = multipart("rows", "notes.txt", b"hello")
    status, _, text = call(server, "/ui/digits", body, {**auth, **headers})
    assert status == 400 and re.search(r'id="upload-error">notes.txt: expected a \.csv, \.npy, \.parquet, \.data, \.dat file', text)
    np.save(path, np.zeros((4, 65), dtype=np.float32))
    body, headers = multipart("rows", "wide.npy", path.read_bytes())
    status, _, text = call(server, "/ui/digits", body, {**auth, **headers})
    assert status == 400 and re.search(r'id="upload-error">wide\.npy: [^<]*65', text) and "gen-ui-" not in text
    body, headers = multipart("rows", "big.npy", b"\0" * (300 << 10))
    assert call(server, "/ui/digits", body, {**auth, **headers})[0] == 413  # --max-body-mb holds
    assert call(server, "/v2/health/ready", headers=auth)[0] == 200


def test_the_served_page_in_a_browser_logs_in_and_scores_an_upload(server, browser, bundles, digits_rows,  # noqa: F811
                                                                   tmp_path):
    from selenium.webdriver.common.by import By

    path = tmp_path / "upload.csv"
    np.savetxt(path, digits_rows[:200], delimiter=",", fmt="%g")
    browser.set_window_size(1280, 1000)
    browser.get(f"http://{server.url}/ui/digits")
    assert browser.current_url.endswith("/ui/login")
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # the form's answer sets the cookie and lands on the index: wait for it before going on
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "a[href='/ui/digits']"))
    browser.get(f"http://{server.url}/ui/digits")
    assert WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "card"))[0].is_displayed()
    browser.find_element(By.NAME, "rows").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()
    flagged = int(load(bundles["ae"], device="cpu").flag(digits_rows[:200]).sum())
    count = WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "flagged-count"))[0]
    assert count.text == f"{flagged:,}"
    assert browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    browser.save_screenshot(str(screenshots(tmp_path) / "served-upload.png"))
