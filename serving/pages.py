"""The report page of each served model (gen.runtime.report) at /ui/NAME, with a form that
scores an uploaded CSV, NPY or Parquet file into the same page, and an index at /ui.

Behind the server's token like every other route: a client that can send the header passes
`Authorization: Bearer TOKEN`; a browser, which cannot, posts the token once to /ui/login and
gets a cookie for /ui only (HttpOnly, SameSite=Strict, so another site's form cannot ride on
it), holding an HMAC of the token rather than the token, so the cookie opens the pages and
never the inference API. An upload is a request body like any other: --max-body-mb and
--max-inflight-mb hold, and the page is rendered off the event loop.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request,
# imported inside add_pages) as objects.
import asyncio
import hashlib
import hmac
import html
import shutil
import tempfile
from pathlib import Path

from gen.runtime.errors import GenError

UI = "/ui"
LOGIN = UI + "/login"
COOKIE = "gen_ui"
UPLOAD_FIELD = "rows"
LOGIN_BYTES = 4096
UPLOAD_SUFFIXES = (".csv", ".npy", ".parquet", ".data", ".dat")  # the last two: ratings (u.data)


def is_page(path: str) -> bool:
    return path == UI or path.startswith(UI + "/")


def cookie_value(token: str) -> str:
    """What the pages' cookie holds: an HMAC of the token, not the token."""
    return hmac.new(token.encode(), b"gen serve pages", hashlib.sha256).hexdigest()


def has_page_cookie(headers: dict, token: str) -> bool:
    """Whether the request's Cookie header holds the pages' cookie for `token`."""
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and hmac.compare_digest(value.encode(), cookie_value(token).encode()):
            return True
    return False


def _shell(title: str, body: str, status: int = 200):
    from fastapi.responses import HTMLResponse

    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title><style>body{{font:15px/1.5 '
            f'system-ui,sans-serif;max-width:760px;margin:0 auto;padding:16px;color:#1d232b}}.alert{{border-left:4px '
            f'solid #a3261b;background:#fbeceb;padding:8px 12px}}input,button{{font:inherit;margin:4px 0}}</style>'
            f'</head><body>{body}</body></html>')
    return HTMLResponse(text, status_code=status)


def add_pages(app, models: list, token, max_body_bytes: int) -> None:
    """Mount /ui (the index), /ui/login, and /ui/NAME (GET: the page; POST: the page for an
    uploaded file of rows) on KServe's FastAPI `app`, for the served (name, GenModel) pairs."""
    from fastapi import Request
    from fastapi.responses import RedirectResponse

    from gen.runtime.report import report_html

    by_name = dict(models)
    pages = {}  # a model's page without rows is the same on every visit
    limit_mb = max_body_bytes / 2**20

    def form(name: str, error=None) -> dict:
        return {"action": f"{UI}/{name}#rows", "field": UPLOAD_FIELD, "accept": ",".join(UPLOAD_SUFFIXES),
                "limit_mb": f"{limit_mb:g}", "error": error, "index": UI}

    def missing(name: str):
        return _shell("gen serve", f"<p class='alert'>{html.escape(name)}: no such model here; see "
                                   f"<a href='{UI}'>the models served</a>.</p>", 404)

    @app.get(UI, include_in_schema=False)
    async def index():
        items = "".join(f"<li><a href='{UI}/{html.escape(n)}'>{html.escape(n)}</a>: {html.escape(m.family)}, "
                        f"serves {html.escape(', '.join(m.capabilities))}</li>" for n, m in models)
        return _shell("gen serve", f"<h1>gen serve</h1><p>Models served; each page shows its model card and "
                                   f"calibration and scores a file you upload.</p><ul>{items}</ul>")

    @app.get(LOGIN, include_in_schema=False)
    async def login_form():
        return _login()

    @app.post(LOGIN, include_in_schema=False)
    async def login(request: Request):
        # open to anyone: a small url-encoded form only, nothing spooled or parsed at length
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        length = request.headers.get("content-length", "")
        if kind != "application/x-www-form-urlencoded" or not length.isdigit() or int(length) > LOGIN_BYTES:
            return _login(f"expected the token form (url-encoded, at most {LOGIN_BYTES} bytes)", 400)
        async with request.form(max_files=0, max_fields=1) as fields:
            given = str(fields.get("token", ""))
        if token is None:
            return RedirectResponse(UI, status_code=303)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _login("wrong token", 401)
        answer = RedirectResponse(UI, status_code=303)
        answer.set_cookie(COOKIE, cookie_value(token), httponly=True, samesite="strict", path=UI)
        return answer

    @app.get(UI + "/{name}", include_in_schema=False)
    async def page(name: str):
        model = by_name.get(name)
        if model is None:
            return missing(name)
        if name not in pages:
            pages[name] = await asyncio.to_thread(report_html, model, form=form(name), bundle_name=name)
        return _html(pages[name])

    @app.post(UI + "/{name}", include_in_schema=False)
    async def upload(name: str, request: Request):
        model = by_name.get(name)
        if model is None:
            return missing(name)
        async with request.form(max_files=1, max_fields=4) as fields:
            upload = fields.get(UPLOAD_FIELD)
            filename = getattr(upload, "filename", None)
            suffix = Path(filename or "").suffix.lower()
            if upload is None or not hasattr(upload, "read"):
                error = f"no file in the form's {UPLOAD_FIELD!r} field"
            elif suffix not in UPLOAD_SUFFIXES:
                error = f"{filename}: expected a {', '.join(UPLOAD_SUFFIXES)} file"
            else:
                error = None
                with tempfile.TemporaryDirectory(prefix="gen-ui-") as folder:
                    path = Path(folder) / f"upload{suffix}"
                    await asyncio.to_thread(_save, upload.file, path)
                    try:
                        text = await asyncio.to_thread(report_html, model, path, form=form(name),
                                                       rows_name=filename, bundle_name=name)
                    except GenError as exc:  # the rows' problem, in one line, on the page
                        error = str(exc).replace(str(path), filename)
        if error is not None:
            return _html(await asyncio.to_thread(report_html, model, form=form(name, error), bundle_name=name),
                         400)
        return _html(text)


def _save(source, path: Path) -> None:
    """Copy an upload's spooled file to `path` (off the event loop: it may be --max-body-mb)."""
    source.seek(0)
    with open(path, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)


def _html(text: str, status: int = 200):
    from fastapi.responses import HTMLResponse

    return HTMLResponse(text, status_code=status)


def _login(error=None, status: int = 200):
    alert = f"<p class='alert'>{html.escape(error)}</p>" if error else ""
    return _shell("gen serve: token", f"<h1>gen serve</h1>{alert}<form method='post' action='{LOGIN}'>"
                                      "<label>Token <input type='password' name='token' autocomplete='current-password' "
                                      "required></label> <button type='submit'>Open the pages</button></form>"
                                      "<p>The server's bearer token (--token); the pages then open for this browser "
                                      "session.</p>", status)
