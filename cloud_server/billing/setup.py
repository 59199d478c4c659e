"""The billing component's resources on the application (the routes are in `routes.py`).

The billing gate is the chat gate too (it decides who may chat and records usage). The
Stripe client exists only when Stripe is configured (`STRIPE_SECRET_KEY`).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..app_keys import SETTINGS
from ..chat.hooks import CHAT_GATE
from .config import BillingConfig
from .gate import BILLING_CONFIG, BillingGate
from .stripe_api import stripe_client_ctx

LOGGER = logging.getLogger(__name__)

BILLING_GATE: web.AppKey[BillingGate] = web.AppKey("billing_gate", BillingGate)


def setup_billing(app: web.Application, config: BillingConfig | None = None) -> None:
    """Put the billing config, the gate and (when configured) the Stripe client on the app."""
    config = config or BillingConfig()
    settings = app[SETTINGS]
    app[BILLING_CONFIG] = config
    gate = BillingGate(app, config)
    app[BILLING_GATE] = gate
    app[CHAT_GATE] = gate
    if not settings.billing_enabled:
        return
    if settings.stripe_webhook_secret is None:
        LOGGER.error("STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not")
    app.cleanup_ctx.append(stripe_client_ctx(config))
