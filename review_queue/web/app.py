"""The review page as a Starlette app: routes, templates, security headers, the service's lifespan.

``create_app(settings)`` connects to Redis (and the broker, for verdict labels) when the app starts and closes
them when it stops; a test or a benchmark may pass a clock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.review_queue.web import api, pages
from fraudstream.review_queue.web.auth import error_response, metrics_token_ok, protected
from fraudstream.review_queue.web.service import ReviewService

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_FILES = frozenset({"app.js"})

SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response that does not set them itself."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self._headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["age"] = format_age
    env.filters["utc"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts))) if ts else ""
    return Jinja2Templates(env=env)


def format_age(seconds: float) -> str:
    """``3d 4h``, ``2h 05m``, ``12m``, ``40s``."""
    s = max(0, int(seconds))
    if s >= 86_400:
        return f"{s // 86_400}d {s % 86_400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m"
    return f"{s}s"


async def health(request: Request) -> Response:
    svc = request.app.state.service
    try:
        await svc.redis.ping()
    except Exception as exc:  # any Redis failure means "not healthy"
        return JSONResponse({"status": "error", "redis": False, "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "redis": True})


async def metrics(request: Request) -> Response:
    """Open to Prometheus unless ``metrics_token`` is set; then it needs that bearer token or a session."""
    svc = request.app.state.service
    token = svc.settings.metrics_token
    if token and not metrics_token_ok(request, token):
        return await protected()(_metrics_body)(request)
    return await _metrics_body(request)


async def _metrics_body(request: Request) -> Response:
    svc = request.app.state.service
    await svc.refresh_metrics()
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")


@protected()
async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return error_response(request, 404, "not found")
    return FileResponse(STATIC_DIR / name)


def routes() -> list[Route]:
    cid = "{customer_id:int}"
    out = [
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/", pages.home),
        Route("/queue", pages.queue_page),
        Route("/next", pages.next_case, methods=["POST"]),
        Route(f"/case/{cid}", pages.case_page),
        Route(f"/case/{cid}/claim", pages.claim_case, methods=["POST"]),
        Route(f"/case/{cid}/verdict", pages.verdict, methods=["POST"]),
        Route("/stats", pages.stats_page),
        Route("/blocklist", pages.blocklist_page),
        Route(f"/blocklist/{cid}/lift", pages.unblock, methods=["POST"]),
        Route("/audit", pages.audit_page),
        Route("/audit.csv", pages.audit_csv),
        Route("/users", pages.users_page, methods=["GET"]),
        Route("/users", pages.add_user, methods=["POST"]),
        Route("/users/{name}/remove", pages.remove_user, methods=["POST"]),
        Route("/users/{name}/role", pages.set_role, methods=["POST"]),
        Route("/static/{name}", static),
        Route("/api/login", api.api_login, methods=["POST"]),
        Route("/api/session", api.api_session),
        Route("/api/cases", api.api_cases),
        Route(f"/api/cases/{cid}", api.api_case),
        Route("/api/claim", api.api_claim_next, methods=["POST"]),
        Route(f"/api/cases/{cid}/claim", api.api_claim, methods=["POST"]),
        Route(f"/api/cases/{cid}/verdict", api.api_verdict, methods=["POST"]),
        Route("/api/stats", api.api_stats),
        Route("/api/blocklist", api.api_blocklist),
        Route(f"/api/blocklist/{cid}/lift", api.api_unblock, methods=["POST"]),
        Route("/api/audit", api.api_audit),
    ]
    for mode in ("release", "skip", "escalate", "reassign"):
        out.append(Route(f"/case/{cid}/{mode}", pages.handover(mode), methods=["POST"]))
        out.append(Route(f"/api/cases/{cid}/{mode}", api.api_handover(mode), methods=["POST"]))
    return out


def create_app(settings: ReviewSettings, clock: Callable[[], float] = time.time,
               background: bool = True) -> Starlette:
    """The page and API; ``background=False`` leaves out the ingest/publish loops (tests drive them)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = await ReviewService.connect(settings, clock=clock)
        app.state.service = svc
        if background:
            await svc.start()
        else:
            await svc.cases.publish_config()
        try:
            yield
        finally:
            await svc.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(request, 404, "not found")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(request, 405, "method not allowed")

    app = Starlette(routes=routes(), lifespan=lifespan, middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={404: not_found, 405: method_not_allowed})
    app.state.templates = _templates()
    return app
