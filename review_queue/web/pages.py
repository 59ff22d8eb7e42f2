"""Server-rendered pages: login, queue, case, stats, block list, audit journal, users."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from fraudstream.review_queue.casefile import load_case_file
from fraudstream.review_queue.cases import ReviewError
from fraudstream.review_queue.users import UserError, generate_password
from fraudstream.review_queue.web.auth import (
    SESSION_COOKIE,
    clear_session_cookie,
    client_address,
    error_response,
    protected,
    set_session_cookie,
)
from fraudstream.review_queue.web.forms import (
    BadInput,
    LoginInput,
    NoteInput,
    QueueInput,
    ReassignInput,
    RoleInput,
    UserAddInput,
    VerdictInput,
    form_fields,
)


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    user = getattr(request.state, "user", None)
    session = getattr(request.state, "session", None)
    context.update(user=user, csrf_token=session.csrf if session is not None else "", now=time.time(),
                   message=request.query_params.get("msg", "")[:200])
    response: Response = request.app.state.templates.TemplateResponse(request, name, context, status_code=status)
    return response


def service(request: Request) -> Any:
    return request.app.state.service


async def login_page(request: Request) -> Response:
    return render(request, "login.html")


async def login(request: Request) -> Response:
    svc = service(request)
    form = await request.form()
    try:
        data = LoginInput.parse(form_fields(form))
    except BadInput as exc:
        return render(request, "login.html", status=400, error=str(exc))
    addr = client_address(request)
    result = await attempt_login(svc, data.user, data.password, addr)
    if isinstance(result, tuple):
        status, message = result
        return render(request, "login.html", status=status, error=message, login_name=data.user)
    response = RedirectResponse("/queue", status_code=303)
    set_session_cookie(response, result, svc.settings)
    return response


async def attempt_login(svc: Any, name: str, password: str, addr: str) -> str | tuple[int, str]:
    """A session token, or (status, message): 429 while locked out, 401 for a wrong name or password."""
    if await svc.guard.locked(name, addr):
        return 429, "too many failed logins: locked out for a while"
    user = await svc.users.verify(name, password)
    if user is None:
        await svc.guard.failed(name, addr)  # the limit-th failure locks the next attempts out
        return 401, "wrong user name or password"
    await svc.guard.succeeded(name)
    token: str = await svc.sessions.create(user.name)
    return token


@protected()
async def logout(request: Request) -> Response:
    svc = service(request)
    await svc.sessions.delete(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, svc.settings)
    return response


@protected()
async def home(request: Request) -> Response:
    return RedirectResponse("/queue", status_code=303)


@protected()
async def queue_page(request: Request) -> Response:
    svc = service(request)
    try:
        q = QueueInput.parse(request.query_params)
    except BadInput as exc:
        return error_response(request, 400, str(exc))
    cases, total = await svc.cases.queue(q.to_filter(), offset=q.offset)
    return render(request, "queue.html", cases=cases, total=total, q=q, page_size=svc.settings.page_size)


@protected()
async def next_case(request: Request) -> Response:
    user = request.state.user
    claimed = await service(request).cases.claim_next(user.name, admin=user.is_admin)
    if claimed is None:
        return RedirectResponse("/queue?msg=No+case+left+to+claim", status_code=303)
    return RedirectResponse(f"/case/{claimed[0]}", status_code=303)


@protected()
async def case_page(request: Request) -> Response:
    svc = service(request)
    cid = request.path_params["customer_id"]
    view = await svc.case_view(cid)
    if view is None:
        return error_response(request, 404, f"no case for card {cid}")
    casefile = await load_case_file(svc.raw_redis, svc.settings.redis_prefix, view.items)
    return render(request, "case.html", case=view.case, casefile=casefile, blocked=view.blocked,
                  holding=view.case.owner == request.state.user.name)


@protected()
async def claim_case(request: Request) -> Response:
    user = request.state.user
    cid = request.path_params["customer_id"]
    try:
        await service(request).cases.claim(user.name, cid, admin=user.is_admin)
    except ReviewError as exc:
        return error_response(request, exc.status, str(exc))
    return RedirectResponse(f"/case/{cid}", status_code=303)


@protected()
async def verdict(request: Request) -> Response:
    svc, user = service(request), request.state.user
    cid = request.path_params["customer_id"]
    try:
        data = VerdictInput.parse(form_fields(await request.form()))
        result = await svc.cases.verdict(user.name, cid, data.verdict, note=data.note,
                                         transaction_id=data.transaction_id, admin=user.is_admin)
    except BadInput as exc:
        return error_response(request, 400, str(exc))
    except ReviewError as exc:
        return error_response(request, exc.status, str(exc))
    if result.resolved:
        svc.metrics.verdicts.labels(analyst=user.name, verdict=data.verdict).inc(result.resolved)
    if result.case_open:
        return RedirectResponse(f"/case/{cid}", status_code=303)
    claimed = await svc.cases.claim_next(user.name, admin=user.is_admin)
    if claimed is None:
        return RedirectResponse("/queue?msg=Queue+cleared", status_code=303)
    return RedirectResponse(f"/case/{claimed[0]}", status_code=303)


def handover(mode: str) -> Any:
    @protected(admin=mode == "reassign")
    async def endpoint(request: Request) -> Response:
        svc, user = service(request), request.state.user
        cid = request.path_params["customer_id"]
        target = ""
        try:
            form = form_fields(await request.form())
            if mode == "reassign":
                target = ReassignInput.parse(form).analyst
                if await svc.users.get(target) is None:
                    raise BadInput(f"analyst: no user {target!r}")
            elif form:
                raise BadInput(f"unexpected fields: {', '.join(sorted(form))}")
            await svc.cases.handover(user.name, cid, mode, admin=user.is_admin, target=target)
        except BadInput as exc:
            return error_response(request, 400, str(exc))
        except ReviewError as exc:
            return error_response(request, exc.status, str(exc))
        if mode == "reassign":
            return RedirectResponse(f"/case/{cid}", status_code=303)
        if mode == "release":
            return RedirectResponse("/queue", status_code=303)
        claimed = await svc.cases.claim_next(user.name, admin=user.is_admin)
        return RedirectResponse(f"/case/{claimed[0]}" if claimed else "/queue?msg=No+case+left+to+claim",
                                status_code=303)

    endpoint.__name__ = f"case_{mode}"
    return endpoint


@protected()
async def stats_page(request: Request) -> Response:
    stats = await service(request).refresh_metrics()
    return render(request, "stats.html", stats=stats)


@protected()
async def blocklist_page(request: Request) -> Response:
    return render(request, "blocklist.html", blocked=await service(request).cases.blocked())


@protected(admin=True)
async def unblock(request: Request) -> Response:
    svc = service(request)
    cid = request.path_params["customer_id"]
    try:
        note = NoteInput.parse(form_fields(await request.form())).note
    except BadInput as exc:
        return error_response(request, 400, str(exc))
    if not await svc.cases.unblock(request.state.user.name, cid, note):
        return error_response(request, 404, f"card {cid} is not on the block list")
    return RedirectResponse("/blocklist?msg=Block+lifted", status_code=303)


@protected(admin=True)
async def audit_page(request: Request) -> Response:
    before = request.query_params.get("before", "+")
    if before != "+" and not all(part.isdigit() for part in before.split("-", 1)):
        return error_response(request, 400, "before: expected an audit entry id like 1700000000000-0")
    entries = await service(request).journal.audit(limit=200, before=before)
    return render(request, "audit.html", entries=entries)


@protected(admin=True)
async def audit_csv(request: Request) -> Response:
    return PlainTextResponse(await service(request).journal.audit_csv(), media_type="text/csv",
                             headers={"content-disposition": "attachment; filename=audit.csv"})


@protected(admin=True)
async def users_page(request: Request) -> Response:
    return render(request, "users.html", users=await service(request).users.list())


@protected(admin=True)
async def add_user(request: Request) -> Response:
    svc = service(request)
    try:
        data = UserAddInput.parse(form_fields(await request.form()))
        password = data.password or generate_password()
        await svc.users.add(data.name, password, data.role, actor=request.state.user.name)
    except (BadInput, UserError) as exc:
        return error_response(request, 400, str(exc))
    return render(request, "users.html", users=await svc.users.list(),
                  created=(data.name, password if not data.password else ""))


@protected(admin=True)
async def remove_user(request: Request) -> Response:
    svc = service(request)
    name = request.path_params["name"]
    if name == request.state.user.name:
        return error_response(request, 400, "you cannot remove your own account")
    try:
        await svc.users.remove(name, actor=request.state.user.name)
    except UserError as exc:
        return error_response(request, 404, str(exc))
    return RedirectResponse("/users?msg=User+removed", status_code=303)


@protected(admin=True)
async def set_role(request: Request) -> Response:
    svc = service(request)
    name = request.path_params["name"]
    try:
        role = RoleInput.parse(form_fields(await request.form())).role
        await svc.users.set_role(name, role, actor=request.state.user.name)
    except BadInput as exc:
        return error_response(request, 400, str(exc))
    except UserError as exc:
        return error_response(request, 404, str(exc))
    return RedirectResponse("/users?msg=Role+changed", status_code=303)
