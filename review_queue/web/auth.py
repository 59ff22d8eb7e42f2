"""Who may call what: session cookie, roles, CSRF token, login and logout.

Every route but ``/login``, ``/api/login``, ``/health`` and ``/metrics`` is wrapped in :func:`protected`: without a live
session a page redirects to the login (303) and the API answers 401; an admin route answers 403 to analysts;
a state-changing request (anything but GET/HEAD) must carry the session's CSRF token, as the form field
``csrf_token`` or the header ``X-CSRF-Token`` (compared in constant time), or gets 403.  ``/metrics`` (aggregate
counts for Prometheus) is open unless ``FRAUDSTREAM_REVIEW_METRICS_TOKEN`` is set; then it needs a session or
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

SESSION_COOKIE = "fs_review_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Attribute of every endpoint wrapped by :func:`protected`: True when it needs the admin role.
ADMIN_ONLY = "admin_only"

Endpoint = Callable[[Request], Awaitable[Response]]


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, status: int, message: str) -> Response:
    """A JSON error for the API, the error page for the rest (the message is escaped by the template)."""
    if is_api(request) or request.url.path == "/metrics":
        return JSONResponse({"error": message}, status_code=status)
    import time

    session = getattr(request.state, "session", None)
    context = {"status": status, "error_text": message, "user": getattr(request.state, "user", None),
               "csrf_token": session.csrf if session is not None else "", "now": time.time(), "message": ""}
    response: Response = request.app.state.templates.TemplateResponse(request, "error.html", context,
                                                                      status_code=status)
    return response


def set_session_cookie(response: Response, token: str, settings: Any) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_max_s, path="/", httponly=True,
                        samesite="strict", secure=settings.secure_cookies)


def clear_session_cookie(response: Response, settings: Any) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=settings.secure_cookies)


async def presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def protected(admin: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint: needs a live session (and the admin role), and the CSRF token when it changes state."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            service = request.app.state.service
            session = await service.sessions.get(request.cookies.get(SESSION_COOKIE))
            user = await service.users.get(session.user) if session is not None else None
            if user is None:
                if request.method in SAFE_METHODS and not is_api(request) and request.url.path != "/metrics":
                    return RedirectResponse("/login", status_code=303)
                return error_response(request, 401, "log in first")
            request.state.user, request.state.session = user, session
            if admin and not user.is_admin:
                return error_response(request, 403, "this needs the admin role")
            if request.method not in SAFE_METHODS and not session.csrf_ok(await presented_csrf(request)):
                return error_response(request, 403, "CSRF token missing or wrong; reload the page")
            return await endpoint(request)

        guarded.__dict__[ADMIN_ONLY] = admin  # lets the route table say which routes need a session, and the role
        return guarded

    return wrap


def access(endpoint: Any) -> str:
    """``public``, ``session`` or ``admin``: what an endpoint needs (``public`` = not wrapped by :func:`protected`)."""
    marker = getattr(endpoint, ADMIN_ONLY, None)
    if marker is None:
        return "public"
    return "admin" if marker else "session"


def metrics_token_ok(request: Request, token: str) -> bool:
    presented = request.headers.get("authorization", "")
    return bool(token) and hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"
