"""Sign up, sign in (password or mailed link), sign out, password reset, verification."""

from __future__ import annotations

import contextlib

from aiohttp import web

from ..accounts import email_tokens, flows, service
from ..client_ip import client_ip
from ..db.engine import DB_SESSIONMAKER
from ..errors import ApiError
from . import session
from .i18n import _
from .pages import field_errors, form, public_form, redirect, render, requires_user, safe_next


async def home(request: web.Request) -> web.StreamResponse:
    signed_in = await session.current(request)
    return redirect("/installations" if signed_in else "/signin")


@public_form
async def signin(request: web.Request) -> web.StreamResponse:
    next_page = safe_next(request.query.get("next"))
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            _user, tokens = await flows.login(
                request.app,
                values.get("email", ""),
                values.get("password", ""),
                ip=client_ip(request),
                totp_code=values.get("totp_code") or None,
            )
        except ApiError as err:
            errors = {k: _(v) for k, v in field_errors(err, "password").items()}
        else:
            await session.start(request, tokens)
            return redirect(safe_next(values.get("next"), next_page))
    elif await session.current(request):
        return redirect(next_page)
    return render(
        request,
        "signin.html",
        {"values": values, "errors": errors, "next": next_page},
        status=401 if errors else 200,
    )


@public_form
async def signup(request: web.Request) -> web.StreamResponse:
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        email, password = values.get("email", ""), values.get("password", "")
        name = values.get("name") or None
        try:
            if flows.verification_required(request.app):
                # Hosted: the same answer whether or not the address has an account.
                await flows.register_quietly(
                    request.app, email, password, name, ip=client_ip(request)
                )
                return render(request, "check_mail.html", {"email": email, "kind": "verify"})
            _user, tokens = await flows.register(
                request.app, email, password, name, ip=client_ip(request)
            )
        except ApiError as err:
            errors = {k: _(v) for k, v in field_errors(err, "email").items()}
        else:
            await session.start(request, tokens)
            return redirect("/installations")
    return render(
        request, "signup.html", {"values": values, "errors": errors}, status=422 if errors else 200
    )


@requires_user
async def signout(request: web.Request, signed_in: session.SignedIn) -> web.StreamResponse:
    async with request.app[DB_SESSIONMAKER].begin() as db:
        await service.revoke_session(db, signed_in.session_id, "logout")
    session.end(request)
    return redirect("/signin")


@public_form
async def forgot(request: web.Request) -> web.StreamResponse:
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            await flows.request_password_reset(
                request.app, values.get("email", ""), ip=client_ip(request)
            )
        except ApiError as err:
            errors = {"email": _(err.detail)}
        else:
            return render(request, "check_mail.html", {"kind": "reset"})
    return render(request, "forgot.html", {"errors": errors}, status=429 if errors else 200)


@public_form
async def reset_password(request: web.Request) -> web.StreamResponse:
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            await flows.confirm_password_reset(
                request.app, values.get("token", ""), values.get("password", "")
            )
        except ApiError as err:
            errors = {k: _(v) for k, v in field_errors(err, "token").items()}
        else:
            return render(
                request,
                "done.html",
                {
                    "title": _("Password changed"),
                    "message": _(
                        "Sign in with your new password. Every other session was signed out."
                    ),
                    "link": "/signin",
                    "link_text": _("Sign in"),
                },
            )
    return render(request, "reset_password.html", {"errors": errors}, status=400 if errors else 200)


@public_form
async def magic_request(request: web.Request) -> web.StreamResponse:
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        nonce = email_tokens.new_browser_nonce()
        try:
            await flows.request_magic_link(
                request.app, values.get("email", ""), ip=client_ip(request), browser_nonce=nonce
            )
        except ApiError as err:
            errors = {"email": _(err.detail)}
        else:
            response = render(request, "check_mail.html", {"kind": "magic"})
            # Binds the link to this browser (ASVS 6.6.2); lives as long as the link.
            session.set_cookie(response, request, session.names(request).magic, nonce, 600)
            return response
    return render(request, "magic_request.html", {"errors": errors}, status=429 if errors else 200)


@public_form
async def magic_landing(request: web.Request) -> web.StreamResponse:
    """GET shows a button (a prefetching mail scanner consumes nothing); POST signs in."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            _user, tokens = await flows.confirm_magic_link(
                request.app,
                values.get("token", ""),
                ip=client_ip(request),
                browser_nonce=request.cookies.get(session.names(request).magic),
            )
        except ApiError as err:
            errors = {"token": _(err.detail)}
        else:
            await session.start(request, tokens)
            response = redirect("/installations")
            session.delete_cookie(response, request, session.names(request).magic)
            return response
    return render(request, "magic_landing.html", {"errors": errors}, status=400 if errors else 200)


@public_form
async def verify_email(request: web.Request) -> web.StreamResponse:
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = await form(request)
        try:
            _user, tokens = await flows.verify_email(
                request.app, values.get("token", ""), sign_in=True
            )
        except ApiError as err:
            errors = {"token": _(err.detail)}
        else:
            if tokens is not None:
                await session.start(request, tokens)
            return redirect("/installations?verified=1")
    return render(request, "verify_email.html", {"errors": errors}, status=400 if errors else 200)


@requires_user
async def resend_verification(
    request: web.Request, signed_in: session.SignedIn
) -> web.StreamResponse:
    # Throttled: the banner stays, and the mail already sent still works.
    with contextlib.suppress(ApiError):
        await flows.resend_verification(request.app, signed_in.user.id)
    return redirect("/installations?resent=1")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home, name="dash.home")
    r.add_route("GET", "/signin", signin, name="dash.signin")
    r.add_route("POST", "/signin", signin)
    r.add_route("GET", "/signup", signup, name="dash.signup")
    r.add_route("POST", "/signup", signup)
    r.add_post("/signout", signout, name="dash.signout")
    r.add_route("GET", "/forgot", forgot, name="dash.forgot")
    r.add_route("POST", "/forgot", forgot)
    r.add_route("GET", "/reset-password", reset_password, name="dash.reset")
    r.add_route("POST", "/reset-password", reset_password)
    r.add_route("GET", "/signin/link", magic_request, name="dash.magic_request")
    r.add_route("POST", "/signin/link", magic_request)
    r.add_route("GET", "/magic-link", magic_landing, name="dash.magic")
    r.add_route("POST", "/magic-link", magic_landing)
    r.add_route("GET", "/verify-email", verify_email, name="dash.verify")
    r.add_route("POST", "/verify-email", verify_email)
    r.add_post("/verify-email/resend", resend_verification, name="dash.resend")
