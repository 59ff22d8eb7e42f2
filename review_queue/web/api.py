"""The JSON API: the page's actions for scripts and tools, with the same session and CSRF rules.

Log in with ``POST /api/login`` (``{"user": ..., "password": ...}``): the answer sets the session cookie and
gives the ``csrf_token`` to send as ``X-CSRF-Token`` on every POST.  Errors are ``{"error": message}`` with a 4xx
status; nothing is changed by a refused call.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fraudstream.review_queue.cases import ReviewError
from fraudstream.review_queue.web.auth import client_address, error_response, protected, set_session_cookie
from fraudstream.review_queue.web.forms import BadInput, LoginInput, NoteInput, QueueInput, ReassignInput, VerdictInput
from fraudstream.review_queue.web.pages import attempt_login, service

#: Largest JSON body accepted (bytes).
MAX_BODY_BYTES = 64 * 1024


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise BadInput("body: expected Content-Type application/json")
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput(f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadInput(f"body: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadInput("body: expected a JSON object")
    return data


def _fail(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ReviewError):
        return error_response(request, exc.status, str(exc))
    return error_response(request, 400, str(exc))


async def api_login(request: Request) -> Response:
    svc = service(request)
    try:
        data = LoginInput.parse(await json_body(request))
    except BadInput as exc:
        return _fail(request, exc)
    result = await attempt_login(svc, data.user, data.password, client_address(request))
    if isinstance(result, tuple):
        return error_response(request, *result)
    session = await svc.sessions.get(result)
    user = await svc.users.get(data.user)
    response = JSONResponse({"user": user.name, "role": user.role, "csrf_token": session.csrf})
    set_session_cookie(response, result, svc.settings)
    return response


@protected()
async def api_session(request: Request) -> Response:
    user, session = request.state.user, request.state.session
    return JSONResponse({"user": user.name, "role": user.role, "csrf_token": session.csrf})


@protected()
async def api_cases(request: Request) -> Response:
    svc = service(request)
    try:
        q = QueueInput.parse(request.query_params)
    except BadInput as exc:
        return _fail(request, exc)
    cases, total = await svc.cases.queue(q.to_filter(), offset=q.offset)
    now = svc.clock()
    return JSONResponse({"total": total, "offset": q.offset, "cases": [c.to_dict(now) for c in cases]})


@protected()
async def api_case(request: Request) -> Response:
    svc = service(request)
    cid = request.path_params["customer_id"]
    view = await svc.case_view(cid)
    if view is None:
        return error_response(request, 404, f"no case for card {cid}")
    return JSONResponse({"case": view.case.to_dict(svc.clock()), "items": view.items, "blocked": view.blocked})


@protected()
async def api_claim_next(request: Request) -> Response:
    user = request.state.user
    claimed = await service(request).cases.claim_next(user.name, admin=user.is_admin)
    if claimed is None:
        return error_response(request, 404, "no case left to claim")
    return JSONResponse({"customer_id": claimed[0], "new": claimed[1]})


@protected()
async def api_claim(request: Request) -> Response:
    user = request.state.user
    cid = request.path_params["customer_id"]
    try:
        new = await service(request).cases.claim(user.name, cid, admin=user.is_admin)
    except ReviewError as exc:
        return _fail(request, exc)
    return JSONResponse({"customer_id": cid, "new": new})


@protected()
async def api_verdict(request: Request) -> Response:
    svc, user = service(request), request.state.user
    cid = request.path_params["customer_id"]
    try:
        data = VerdictInput.parse(await json_body(request))
        result = await svc.cases.verdict(user.name, cid, data.verdict, note=data.note,
                                         transaction_id=data.transaction_id, admin=user.is_admin)
    except (BadInput, ReviewError) as exc:
        return _fail(request, exc)
    if result.resolved:
        svc.metrics.verdicts.labels(analyst=user.name, verdict=data.verdict).inc(result.resolved)
    return JSONResponse({"result": result.code, "resolved": result.resolved, "case_open": result.case_open})


def api_handover(mode: str) -> Any:
    @protected(admin=mode == "reassign")
    async def endpoint(request: Request) -> Response:
        svc, user = service(request), request.state.user
        cid = request.path_params["customer_id"]
        try:
            body = await json_body(request)
            target = ""
            if mode == "reassign":
                target = ReassignInput.parse(body).analyst
                if await svc.users.get(target) is None:
                    raise BadInput(f"analyst: no user {target!r}")
            elif body:
                raise BadInput(f"unexpected fields: {', '.join(sorted(body))}")
            await svc.cases.handover(user.name, cid, mode, admin=user.is_admin, target=target)
        except (BadInput, ReviewError) as exc:
            return _fail(request, exc)
        return JSONResponse({"result": "ok", "customer_id": cid, "action": mode})

    endpoint.__name__ = f"api_{mode}"
    return endpoint


@protected()
async def api_stats(request: Request) -> Response:
    return JSONResponse(await service(request).refresh_metrics())


@protected()
async def api_blocklist(request: Request) -> Response:
    return JSONResponse({"blocked": await service(request).cases.blocked()})


@protected(admin=True)
async def api_unblock(request: Request) -> Response:
    svc = service(request)
    cid = request.path_params["customer_id"]
    try:
        note = NoteInput.parse(await json_body(request)).note
    except BadInput as exc:
        return _fail(request, exc)
    if not await svc.cases.unblock(request.state.user.name, cid, note):
        return error_response(request, 404, f"card {cid} is not on the block list")
    return JSONResponse({"result": "ok", "customer_id": cid})


@protected(admin=True)
async def api_audit(request: Request) -> Response:
    entries = await service(request).journal.audit(limit=500)
    return JSONResponse({"entries": [e.to_dict() for e in entries]})
