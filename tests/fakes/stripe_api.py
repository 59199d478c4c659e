"""A fake of the parts of the Stripe API that billing uses, served by aiohttp on 127.0.0.1.

Point the real SDK at it with ``StripeClient(..., base_addresses={"api": fake.base_url})``
(``STRIPE_API_BASE`` in our settings). It answers with Stripe's JSON shapes, checks the
secret key, honours ``Idempotency-Key`` like Stripe (same key + same parameters replays the
first response with ``Idempotent-Replayed: true``; same key + other parameters is a 400
``idempotency_error``) and records every call with its decoded form parameters.

Endpoints: ``POST /v1/customers``, ``POST /v1/checkout/sessions``,
``POST /v1/billing_portal/sessions``, ``GET /v1/subscriptions/{id}`` (from ``subscriptions``,
which tests fill), ``DELETE /v1/subscriptions/{id}`` (cancels it), anything else 404 in
Stripe's error envelope.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = ["FakeStripe", "RecordedCall", "decode_form"]

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's nested form encoding (``a[b][0][c]=v``) back into dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):
                position = int(part) if part else len(node)
                while len(node) <= position:
                    node.append({})
                if last:
                    node[position] = value
                else:
                    if not isinstance(node[position], dict | list) or node[position] == {}:
                        nxt = parts[index + 1]
                        node[position] = [] if nxt.isdigit() or nxt == "" else {}
                    node = node[position]
            else:
                if last:
                    node[part] = value
                else:
                    nxt = parts[index + 1]
                    node = node.setdefault(part, [] if nxt.isdigit() or nxt == "" else {})
    return root


@dataclass
class RecordedCall:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    authorization: str | None
    stripe_version: str | None
    replayed: bool = False


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(8)}"


@dataclass
class FakeStripe:
    secret_key: str = "sk_test_fake"
    calls: list[RecordedCall] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _idempotency: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(
        default_factory=dict
    )

    def calls_to(self, path: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.path == path and not c.replayed]

    async def __aenter__(self) -> FakeStripe:
        app = web.Application()
        app.router.add_post("/v1/customers", self._customers)
        app.router.add_post("/v1/checkout/sessions", self._checkout_sessions)
        app.router.add_post("/v1/billing_portal/sessions", self._portal_sessions)
        app.router.add_get("/v1/subscriptions/{id}", self._subscription)
        app.router.add_delete("/v1/subscriptions/{id}", self._cancel_subscription)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- plumbing -------------------------------------------------------------------

    @staticmethod
    def _error(status: int, kind: str, message: str, code: str | None = None) -> web.Response:
        body: dict[str, Any] = {"error": {"type": kind, "message": message}}
        if code:
            body["error"]["code"] = code
        return web.json_response(body, status=status, headers={"Request-Id": _new_id("req")})

    async def _handle(
        self, request: web.Request, create: Any, *, method_params: dict[str, Any] | None = None
    ) -> web.Response:
        auth = request.headers.get("Authorization")
        if request.method == "POST":
            params = decode_form(parse_qsl(await request.text(), keep_blank_values=True))
        else:
            params = method_params or {}
        key = request.headers.get("Idempotency-Key")
        call = RecordedCall(
            method=request.method,
            path=request.path,
            params=params,
            idempotency_key=key,
            authorization=auth,
            stripe_version=request.headers.get("Stripe-Version"),
        )
        self.calls.append(call)
        if auth != f"Bearer {self.secret_key}":
            return self._error(401, "invalid_request_error", "Invalid API Key provided.")
        if key is not None and request.method == "POST":
            seen = self._idempotency.get(f"{request.path}|{key}")
            if seen is not None:
                first_params, status, body = seen
                if first_params != params:
                    return self._error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                    )
                call.replayed = True
                return web.json_response(
                    body, status=status, headers={"Idempotent-Replayed": "true"}
                )
        status, body = create(request, params)
        if key is not None and request.method == "POST":
            self._idempotency[f"{request.path}|{key}"] = (params, status, body)
        return web.json_response(body, status=status, headers={"Request-Id": _new_id("req")})

    # --- endpoints ------------------------------------------------------------------

    async def _customers(self, request: web.Request) -> web.Response:
        def create(_request: web.Request, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            customer = {
                "id": _new_id("cus"),
                "object": "customer",
                "created": int(time.time()),
                "email": params.get("email"),
                "livemode": False,
                "metadata": params.get("metadata", {}),
            }
            self.customers[customer["id"]] = customer
            return 200, customer

        return await self._handle(request, create)

    async def _checkout_sessions(self, request: web.Request) -> web.Response:
        def create(_request: web.Request, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            customer = params.get("customer")
            if customer is not None and customer not in self.customers:
                return 400, {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such customer: '{customer}'",
                        "param": "customer",
                    }
                }
            session_id = _new_id("cs")
            return 200, {
                "id": session_id,
                "object": "checkout.session",
                "created": int(time.time()),
                "mode": params.get("mode"),
                "customer": customer,
                "client_reference_id": params.get("client_reference_id"),
                "livemode": False,
                "metadata": params.get("metadata", {}),
                "status": "open",
                "success_url": params.get("success_url"),
                "cancel_url": params.get("cancel_url"),
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            }

        return await self._handle(request, create)

    async def _portal_sessions(self, request: web.Request) -> web.Response:
        def create(_request: web.Request, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            customer = params.get("customer")
            if customer not in self.customers:
                return 400, {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such customer: '{customer}'",
                        "param": "customer",
                    }
                }
            session_id = _new_id("bps")
            return 200, {
                "id": session_id,
                "object": "billing_portal.session",
                "created": int(time.time()),
                "customer": customer,
                "livemode": False,
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.test/p/session/{session_id}",
            }

        return await self._handle(request, create)

    async def _subscription(self, request: web.Request) -> web.Response:
        subscription_id = request.match_info["id"]

        def read(_request: web.Request, _params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            found = self.subscriptions.get(subscription_id)
            if found is None:
                return 404, {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such subscription: '{subscription_id}'",
                        "param": "id",
                    }
                }
            return 200, found

        return await self._handle(request, read)

    async def _cancel_subscription(self, request: web.Request) -> web.Response:
        """Cancel now, as ``DELETE /v1/subscriptions/{id}`` does (a missing one is a 404)."""
        subscription_id = request.match_info["id"]

        def cancel(_request: web.Request, _params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            found = self.subscriptions.get(subscription_id)
            if found is None:
                return 404, {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such subscription: '{subscription_id}'",
                        "param": "id",
                    }
                }
            found["status"] = "canceled"
            found["canceled_at"] = int(time.time())
            return 200, found

        return await self._handle(request, cancel)

    async def _unknown(self, request: web.Request) -> web.Response:
        self.calls.append(
            RecordedCall(
                request.method,
                request.path,
                {},
                request.headers.get("Idempotency-Key"),
                request.headers.get("Authorization"),
                request.headers.get("Stripe-Version"),
            )
        )
        return self._error(
            404, "invalid_request_error", f"Unrecognized request URL ({request.path})."
        )


# --- building and signing webhook events (Stripe's shapes, signed like Stripe does) -----

WEBHOOK_SECRET = "whsec_test_fake"


def subscription_object(
    subscription_id: str,
    *,
    status: str,
    price: str,
    customer: str = "cus_test_unknown",
    user_id: str | None = None,
    plan: str | None = None,
    period_start: int | None = None,
    period_end: int | None = None,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
) -> dict[str, Any]:
    """A Subscription object as the 2025+ API versions send it (periods on the item)."""
    start = period_start or int(time.time())
    end = period_end or start + 30 * 86400
    metadata: dict[str, str] = {}
    if user_id:
        metadata["user_id"] = user_id
    if plan:
        metadata["plan"] = plan
    return {
        "id": subscription_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "trial_end": trial_end,
        "livemode": False,
        "metadata": metadata,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": _new_id("si"),
                    "object": "subscription_item",
                    "current_period_start": start,
                    "current_period_end": end,
                    "price": {"id": price, "object": "price"},
                    "quantity": 1,
                }
            ],
        },
    }


def event(
    event_type: str, obj: dict[str, Any], *, created: int, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or _new_id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }


def signed(
    payload: dict[str, Any] | str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """The body and headers of a webhook delivery, signed with the SDK's own helper."""
    import json

    import stripe

    body = payload if isinstance(payload, str) else json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}
