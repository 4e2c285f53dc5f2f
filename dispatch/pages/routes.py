"""``/console`` and ``/console/reports`` for operators and the office, ``/m`` for team leaders,
and their bundled assets at /static."""

from __future__ import annotations

import base64
import hashlib
import os

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from dispatch.deps import RuntimeDep
from dispatch.errors import MIDDLEWARE_RESPONSES, RETRY_AFTER
from dispatch.pages import service

router = APIRouter(tags=["pages"])

# A server installed with `pip install .` holds a copy of the pages made at the install: a
# build after it reaches that server only once installed again.
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>503</title>
<p>前端页面尚未构建：在 <code>web/</code> 中运行 <code>npm ci &amp;&amp; npm run build</code>
（或 <code>bash scripts/setup</code>）；以 <code>pip install .</code> 安装的服务器，
构建后须再运行一次 <code>pip install .</code>。</p>
<p>The pages are not built: run <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>
(or <code>bash scripts/setup</code>); a server installed with <code>pip install .</code> needs
<code>pip install .</code> again after the build.</p>"""

# When to look again at pages not built, as every 503 says: building them takes a minute or
# more, and the server serves them once built (or installed again), without a restart.
NOT_BUILT_RETRY_AFTER_S = 60

_PAGE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/html": {}}, "description": "the page"},
    503: {
        "content": {"text/html": {}},
        "description": "the front-end was not built",
        "headers": RETRY_AFTER,
    },
    **MIDDLEWARE_RESPONSES,
}


def _page(page: str, runtime: RuntimeDep) -> HTMLResponse:
    settings = runtime.settings
    try:
        html = service.render_page(page, settings)
    except service.PagesNotBuilt:
        return HTMLResponse(
            NOT_BUILT,
            status_code=503,
            headers={"Retry-After": str(NOT_BUILT_RETRY_AFTER_S)},
        )
    return HTMLResponse(
        html,
        headers={
            # The HTML names the hashed bundles, so it must never be served stale.
            "Cache-Control": "no-cache",
            "Content-Security-Policy": service.content_security_policy(settings),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


@router.get("/console", response_class=HTMLResponse, responses=_PAGE_RESPONSES)
def console_page(runtime: RuntimeDep) -> HTMLResponse:
    """The operator's dispatch console (desktop)."""
    return _page("console", runtime)


@router.get("/console/reports", response_class=HTMLResponse, responses=_PAGE_RESPONSES)
def reports_page(runtime: RuntimeDep) -> HTMLResponse:
    """The response-time report with its charts, for operators and the assessing office."""
    return _page("reports", runtime)


@router.get("/m", response_class=HTMLResponse, responses=_PAGE_RESPONSES)
def phone_page(runtime: RuntimeDep) -> HTMLResponse:
    """The team leader's page (phone, also inside WeChat)."""
    return _page("phone", runtime)


# The server's address alone (what scripts/demo and uvicorn print) names no page: a person who
# opens it gets the pages listed, in both languages (the page has no script to switch), rather
# than the API's 404 in JSON. Its one style element is allowed by its hash, nothing else inline.
INDEX_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:36rem}"
    "a{display:flex;align-items:center;min-height:3rem;margin:.5rem 0;padding:.5rem 1rem;"
    "border:.0625rem solid #1d4ed8;border-radius:.375rem;color:#1d4ed8;text-decoration:none}"
)
INDEX_STYLE_HASH = base64.b64encode(hashlib.sha256(INDEX_STYLE.encode()).digest()).decode()
INDEX = f"""<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>1-3-5 指挥调度 / Dispatch 1-3-5</title><style>{INDEX_STYLE}</style>
<h1>1-3-5 指挥调度 / Dispatch 1-3-5</h1>
<a href="/console">指挥调度台（值班员）/ Dispatch console (operators)</a>
<a href="/m">队长接警（手机）/ Team leader (phone)</a>
<a href="/console/reports">响应时间报表 / Response-time report</a>
</html>"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index_page(runtime: RuntimeDep) -> HTMLResponse:
    policy = service.content_security_policy(runtime.settings).replace(
        "style-src 'self'", f"style-src 'self' 'sha256-{INDEX_STYLE_HASH}'"
    )
    return HTMLResponse(
        INDEX,
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


# The pages' icon, drawn here: a red tile with a clock face at one minute past, for the 1-3-5
# clocks. Browsers ask for /favicon.ico by themselves; SVG is what they get there too.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<rect width="64" height="64" rx="14" fill="#b91c1c"/>'
    '<circle cx="32" cy="32" r="21" fill="none" stroke="#fff" stroke-width="6"/>'
    '<path d="M32 18v14l8 8" fill="none" stroke="#fff" stroke-width="6" stroke-linecap="round"'
    ' stroke-linejoin="round"/>'
    "</svg>"
)


@router.get("/favicon.ico", include_in_schema=False)
@router.get("/favicon.svg", include_in_schema=False)
def favicon() -> Response:
    return Response(
        FAVICON,
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


class HashedStaticFiles(StaticFiles):
    """Bundles carry a content hash in their names: cache them for good."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def check_config(self) -> None:
        # Not built yet: answer 404 for assets rather than failing; the pages say what to do.
        directory = self.directory
        if directory is not None and await anyio.to_thread.run_sync(os.path.isdir, directory):
            await super().check_config()


def mount_static(app: FastAPI) -> None:
    # check_dir=False: the server runs without built pages (the API does not need them).
    files = HashedStaticFiles(directory=service.STATIC_DIR / "assets", check_dir=False)
    app.mount("/static/assets", GZipMiddleware(files, minimum_size=1024), name="static")
