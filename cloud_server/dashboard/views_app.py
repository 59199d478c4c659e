"""The signed-in pages: installations, usage, plan and billing, memory, account."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import date
from typing import Any

import segno
from aiohttp import web

from ..accounts import flows, lifecycle
from ..accounts import installations as inst
from ..accounts.app_keys import SERVER_SECRETS
from ..billing.entitlements import UsageLimits, usage_notice_codes
from ..billing.gate import notice
from ..billing.routes import (
    portal_url,
    start_checkout,
    subscription_response,
    usage_report,
)
from ..billing.setup import BILLING_GATE
from ..client_ip import client_ip
from ..db.engine import DB_SESSIONMAKER
from ..errors import ApiError, request_id_of
from ..memory.backend import MemoryBackendError, MemoryNotFoundError
from ..memory.routes import memory_export
from ..memory.setup import MEMORY_BACKEND
from . import session
from .chart import daily_chart
from .i18n import _
from .pages import BILLING_ON, PUBLIC_URL, field_errors, form, redirect, render, requires_user

HA_CONFIG_FLOW_LINK = "https://my.home-assistant.io/redirect/config_flow_start/?domain=home_mind"


async def _installations(request: web.Request, user_id: str) -> list[Any]:
    async with request.app[DB_SESSIONMAKER]() as db:
        return await inst.list_installations(db, user_id)


@requires_user
async def installations(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = await form(request)
        name = values.get("name", "")
        if not 1 <= len(name) <= 100:
            errors["name"] = _("Give the installation a name (up to 100 characters).")
            status = 422
        else:
            async with request.app[DB_SESSIONMAKER].begin() as db:
                installation, token = await inst.create_installation(
                    db, signed_in.user.id, name, ip=client_ip(request)
                )
            response = render(
                request,
                "installation_created.html",
                {
                    "installation": installation,
                    "token": token,
                    "server_url": request.app[PUBLIC_URL],
                    "ha_link": HA_CONFIG_FLOW_LINK,
                },
            )
            response.headers["Cache-Control"] = "no-store"
            return response
    return render(
        request,
        "installations.html",
        {
            "installations": await _installations(request, signed_in.user.id),
            "errors": errors,
            "verified": request.query.get("verified") == "1",
            "resent": request.query.get("resent") == "1",
            "needs_verification": flows.verification_required(request.app)
            and signed_in.user.email_verified_at is None,
        },
        status=status,
    )


@requires_user
async def installation_action(
    request: web.Request, signed_in: session.SignedIn
) -> web.StreamResponse:
    installation_id = request.match_info["id"]
    action = request.match_info["action"]
    async with request.app[DB_SESSIONMAKER]() as db:
        found = await inst.get_owned(db, signed_in.user.id, installation_id)
    if found is None:
        return render(
            request,
            "error.html",
            {"title": _("Not found"), "message": _("No such installation.")},
            status=404,
        )
    if request.method == "GET":
        if action != "revoke":
            raise web.HTTPNotFound()
        return render(
            request,
            "confirm.html",
            {
                "title": _("Remove “%s”?") % found.name,
                "message": _(
                    "Its token stops working at once and its Anthropic key is erased. "
                    "Home Assistant will ask for a new token."
                ),
                "action": f"/installations/{found.id}/revoke",
                "button": _("Remove installation"),
                "back": "/installations",
            },
        )
    values = await form(request)
    errors: dict[str, str] = {}
    ip = client_ip(request)
    async with request.app[DB_SESSIONMAKER].begin() as db:
        if action == "rename":
            name = values.get("name", "")
            if not 1 <= len(name) <= 100:
                errors[f"name-{found.id}"] = _(
                    "Give the installation a name (up to 100 characters)."
                )
            else:
                await inst.rename_installation(db, signed_in.user.id, found.id, name, ip=ip)
        elif action == "revoke":
            await inst.revoke_installation(db, signed_in.user.id, found.id, ip=ip)
        elif action == "key":
            try:
                await inst.set_api_key(
                    db,
                    request.app[SERVER_SECRETS].encryption,
                    signed_in.user.id,
                    found.id,
                    values.get("api_key", ""),
                    ip=ip,
                )
            except inst.ApiKeyFormatError as err:
                errors[f"api_key-{found.id}"] = _(str(err))
        elif action == "delete-key":
            await inst.delete_api_key(db, signed_in.user.id, found.id, ip=ip)
        else:
            raise web.HTTPNotFound()
    if errors:
        return render(
            request,
            "installations.html",
            {
                "installations": await _installations(request, signed_in.user.id),
                "errors": errors,
                "needs_verification": False,
            },
            status=422,
        )
    return redirect("/installations")


def _notices(messages: int, allowance: int | None, hard_limit: int | None) -> list[Any]:
    if allowance is None or hard_limit is None:
        return []
    codes = usage_notice_codes(messages, UsageLimits(allowance, hard_limit))
    if "usage_allowance_reached" in codes:
        codes = [c for c in codes if c != "usage_warning"]
    if "usage_over_allowance" in codes:
        codes = ["usage_over_allowance"]
    return [notice(code) for code in codes]


@requires_user
async def usage(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    report = await usage_report(request.app, signed_in.user.id)
    per_day: dict[date, int] = {d.date: d.messages for d in report.per_day}
    chart = daily_chart(report.period_start, report.period_end, per_day)
    percent = None
    if report.allowance:
        percent = min(100.0, 100 * report.messages / report.allowance)
        if report.messages:
            percent = max(percent, 1.0)  # a first message shows on the meter
    return render(
        request,
        "usage.html",
        {
            "report": report,
            "chart": chart,
            "percent": percent,
            "notices": _notices(report.messages, report.allowance, report.hard_limit),
        },
    )


@requires_user
async def billing(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    gate = request.app[BILLING_GATE]
    state = await gate.account_state(signed_in.user.id, fresh=True)
    sub = subscription_response(state)
    now = gate.now()
    trial_days_left = None
    if sub.status == "trialing" and sub.trial_end is not None:
        trial_days_left = max(0, math.ceil((sub.trial_end - now).total_seconds() / 86400))
    return render(
        request,
        "billing.html",
        {
            "sub": sub,
            # A Stripe subscription (not the sign-up trial): changed in the portal instead.
            "subscribed": state.subscription_id is not None
            and sub.status in ("active", "trialing", "past_due"),
            "trial_days_left": trial_days_left,
            "checkout": request.query.get("checkout"),
            "error": request.query.get("error"),
            "needs_verification": flows.verification_required(request.app)
            and signed_in.user.email_verified_at is None,
        },
    )


@requires_user
async def billing_action(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    if not request.app[BILLING_ON]:
        raise web.HTTPNotFound()
    values = await form(request)
    try:
        if request.match_info["action"] == "checkout":
            plan = values.get("plan")
            if plan not in ("byok", "managed"):
                return redirect("/billing")
            url = await start_checkout(request.app, signed_in.user.id, plan)
        else:
            url = await portal_url(request.app, signed_in.user.id, request_id_of(request) or "")
    except ApiError as err:
        return render(
            request,
            "billing.html",
            {
                "sub": subscription_response(
                    await request.app[BILLING_GATE].account_state(signed_in.user.id)
                ),
                "error_message": _(err.detail),
            },
            status=err.status,
        )
    return redirect(url)


def _person(value: str | None) -> str | None:
    return value or None


@requires_user
async def memory(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    backend = request.app[MEMORY_BACKEND]
    query = (request.query.get("q") or "").strip()[:500]
    person = _person(request.query.get("person"))
    try:
        everything = await backend.list(signed_in.user.id, all_speakers=True, limit=500)
        if query:
            shown = await backend.search(
                signed_in.user.id, query, speaker_id=person, all_speakers=person is None, limit=50
            )
        elif person:
            shown = [r for r in everything if r.speaker_id == person]
        else:
            shown = everything
    except MemoryBackendError:
        return render(
            request,
            "error.html",
            {
                "title": _("Memory is not available right now"),
                "message": _("Try again in a moment."),
            },
            status=503,
        )
    people = sorted({r.speaker_id for r in everything if r.speaker_id})
    groups: dict[str | None, list[Any]] = {}
    for record in shown:
        groups.setdefault(record.speaker_id, []).append(record)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
    return render(
        request,
        "memory.html",
        {
            "groups": ordered,
            "people": people,
            "query": query,
            "person": person,
            "total": len(everything),
        },
    )


@requires_user
async def memory_edit(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    backend = request.app[MEMORY_BACKEND]
    memory_id = request.match_info["id"]
    try:
        record = await backend.get(signed_in.user.id, memory_id)
    except MemoryNotFoundError:
        record = None
    if record is None or not record.active:
        return render(
            request,
            "error.html",
            {"title": _("Not found"), "message": _("No such memory.")},
            status=404,
        )
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        if request.match_info.get("action") == "delete":
            with contextlib.suppress(MemoryNotFoundError):
                await backend.delete(signed_in.user.id, record.id)
            return redirect("/memory")
        content = values.get("content", "")
        if not content:
            errors["content"] = _("Write what Home Mind should remember.")
        elif len(content) > 2000:
            errors["content"] = _("Keep it under 2000 characters.")
        else:
            await backend.update(
                signed_in.user.id,
                record.id,
                content=content,
                category=values.get("category") or None,
                set_category=True,
            )
            return redirect("/memory")
    return render(
        request,
        "memory_edit.html",
        {"record": record, "errors": errors},
        status=422 if errors else 200,
    )


@requires_user
async def memory_delete_all(
    request: web.Request, signed_in: session.SignedIn
) -> web.StreamResponse:
    if request.method == "POST":
        await request.app[MEMORY_BACKEND].delete_all(signed_in.user.id)
        return redirect("/memory")
    return render(
        request,
        "confirm.html",
        {
            "title": _("Forget everything?"),
            "message": _(
                "Home Mind forgets every fact about your household and everyone in it. "
                "This cannot be undone."
            ),
            "action": "/memory/delete-all",
            "button": _("Forget everything"),
            "back": "/memory",
        },
    )


def _download(data: Any, filename: str) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, default=str),
        content_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@requires_user
async def memory_download(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    export = await memory_export(request.app, signed_in.user.id)
    return _download(export.model_dump(mode="json"), "homemind-memory.json")


@requires_user
async def account(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    errors: dict[str, str] = {}
    message = None
    status = 200
    if request.method == "POST":
        values = await form(request)
        action = request.match_info.get("action")
        if action == "password":
            try:
                await lifecycle.change_password(
                    request.app,
                    signed_in.user.id,
                    values.get("current_password", ""),
                    values.get("new_password", ""),
                    keep_session=signed_in.session_id,
                )
            except ApiError as err:
                errors = {k: _(v) for k, v in field_errors(err, "new_password").items()}
                status = err.status
            else:
                message = _("Password changed. Every other session was signed out.")
        elif action == "end-all":
            await lifecycle.end_all_sessions(request.app, signed_in.user.id)
            session.end(request)
            return redirect("/signin")
        elif action == "end":
            await lifecycle.end_session(
                request.app, signed_in.user.id, values.get("session_id", "")
            )
            return redirect("/account")
    return await _account_page(request, signed_in, errors, message, status)


async def _account_page(
    request: web.Request,
    signed_in: session.SignedIn,
    errors: dict[str, str],
    message: str | None,
    status: int,
) -> web.Response:
    sessions = await lifecycle.active_sessions(request.app, signed_in.user.id)
    return render(
        request,
        "account.html",
        {
            "errors": errors,
            "message": message,
            "sessions": sessions,
            "current_session": signed_in.session_id,
            "two_step": signed_in.user.totp_secret is not None,
        },
        status=status,
    )


@requires_user
async def two_step(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    """Turn two-step sign-in on (GET shows a new secret, POST checks the first code) or off."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            if request.match_info.get("action") == "off":
                await lifecycle.totp_disable(
                    request.app, signed_in.user.id, values.get("password", "")
                )
            else:
                await lifecycle.totp_enable(
                    request.app,
                    signed_in.user.id,
                    values.get("setup_token", ""),
                    values.get("code", ""),
                )
        except ApiError as err:
            errors = {k: _(v) for k, v in field_errors(err, "code").items()}
            if request.match_info.get("action") == "off":
                return await _account_page(request, signed_in, errors, None, err.status)
            return render(
                request,
                "two_step.html",
                {
                    "errors": errors,
                    "secret": values.get("secret", ""),
                    "uri": values.get("uri", ""),
                    "qr": totp_qr(values.get("uri", "")),
                    "setup_token": values.get("setup_token", ""),
                },
                status=err.status,
            )
        return redirect("/account")
    secret, uri, setup_token = await lifecycle.totp_setup(request.app, signed_in.user.id)
    return render(
        request,
        "two_step.html",
        {
            "errors": errors,
            "secret": secret,
            "uri": uri,
            "qr": totp_qr(uri),
            "setup_token": setup_token,
        },
    )


def totp_qr(uri: str) -> str | None:
    """The otpauth URI as a QR code: an SVG data URI for an <img> (the page's CSP allows
    data: images), so the template escapes it like any other value and no markup of
    ours is marked safe. A light background lets it scan on a dark page too."""
    if not uri.startswith("otpauth://"):
        return None
    code = segno.make(uri, error="m", micro=False)
    data_uri: str = code.svg_data_uri(scale=4, border=4, dark="#000", light="#fff")
    return data_uri


@requires_user
async def account_export(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    data = await lifecycle.export_account(request.app, signed_in.user.id)
    return _download(data, "homemind-account.json")


@requires_user
async def account_delete(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            await lifecycle.delete_account(
                request.app, signed_in.user.id, values.get("password", "")
            )
        except ApiError as err:
            errors = {k: _(v) for k, v in field_errors(err, "password").items()}
        else:
            session.end(request)
            request["dashboard_user"] = None
            return render(
                request,
                "done.html",
                {
                    "title": _("Your account is gone"),
                    "message": _(
                        "Every installation was revoked and everything Home Mind knew about "
                        "your household was erased."
                    ),
                    "link": "/signup",
                    "link_text": _("Create a new account"),
                },
            )
    return render(request, "account_delete.html", {"errors": errors}, status=403 if errors else 200)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/installations", installations, name="dash.installations")
    r.add_post("/installations", installations)
    r.add_get("/installations/{id}/{action}", installation_action, name="dash.installation")
    r.add_post("/installations/{id}/{action}", installation_action)
    r.add_get("/usage", usage, name="dash.usage")
    r.add_get("/billing", billing, name="dash.billing")
    r.add_post("/billing/{action:checkout|portal}", billing_action, name="dash.billing_action")
    r.add_get("/memory", memory, name="dash.memory")
    r.add_get("/memory/export", memory_download, name="dash.memory_export")
    r.add_get("/memory/delete-all", memory_delete_all, name="dash.memory_delete_all")
    r.add_post("/memory/delete-all", memory_delete_all)
    r.add_get("/memory/{id}/edit", memory_edit, name="dash.memory_edit")
    r.add_post("/memory/{id}/edit", memory_edit)
    r.add_post("/memory/{id}/{action:delete}", memory_edit)
    r.add_get("/account", account, name="dash.account")
    r.add_post("/account/{action:password|end|end-all}", account)
    r.add_get("/account/two-step", two_step, name="dash.two_step")
    r.add_post("/account/two-step", two_step)
    r.add_post("/account/two-step/{action:off}", two_step)
    r.add_get("/account/export", account_export, name="dash.account_export")
    r.add_get("/account/delete", account_delete, name="dash.account_delete")
    r.add_post("/account/delete", account_delete)
