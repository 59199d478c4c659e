"""The billing `ChatGate`: enforces the tier table on every chat request and records usage.

It wraps the chat component's `DefaultChatGate`, which owns key resolution (the
installation's own key, else the server's): self-hosted requests go straight through it,
`byok` requests accept only what it resolves to an installation key, and `managed`
requests use the server's key (that is what the plan pays for).

Caching: the account state (effective tier, period, messages so far) is cached per process
for `cache_seconds` (default 5 s) and invalidated locally when a webhook changes the
account, so a chat request costs no billing query while the entry is fresh. Across several
instances a change made through another instance is seen within that TTL; the message
counter of a cached entry is bumped locally on each recorded message, so with N instances
the hard ceiling may be overshot by at most what the other instances admit within one TTL.

Usage is recorded once per request (`INSERT ... ON CONFLICT DO NOTHING` on an id the gate
makes in `admit`, so a client that repeats its `X-Request-ID` cannot hide usage), in a task
shielded from cancellation, so a client that disconnects mid-stream still gets its answer
counted. A request counts as a message when the chat says so (a user turn) and it reached
the model (completed, or tokens were spent); an upstream failure before any token is free.
When the database is down at that moment the answer is not held back: the row is retried
in the background until the database is back (about a minute), then logged as lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from homemind_client.models import ErrorCode, Notice

from ..accounts.principal import InstallationPrincipal
from ..app_keys import SETTINGS
from ..chat.gate import DefaultChatGate
from ..chat.hooks import COUNTS_AS_MESSAGE, ChatAccess, ChatGate, ChatOutcome
from ..db.engine import DB_READER, DB_SESSIONMAKER
from ..db.outage import is_database_outage
from ..errors import ApiError
from .config import BillingConfig
from .entitlements import ONCE_PER_PERIOD, usage_notice_codes
from .pricing import estimate_cost_micro_usd
from .store import AccountState, claim_notice, insert_usage, load_account_state

LOGGER = logging.getLogger(__name__)

BILLING_CONFIG: web.AppKey[BillingConfig] = web.AppKey("billing_config", BillingConfig)

Clock = Callable[[], datetime]
# A usage row that meets a database outage is retried: 0.5 s, 1 s, 2 s ... 8 s apart,
# about a minute in all, then logged as lost.
_STORE_ATTEMPTS = 10
_STORE_FIRST_DELAY = 0.5
_STORE_MAX_DELAY = 8.0
# Key in `ChatAccess.context` of the usage row's id.
USAGE_ID = "usage_id"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EntitlementCache:
    """Per-process TTL cache of `AccountState` by user id."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, AccountState]] = {}

    async def get(self, user_id: str, load: Callable[[], Awaitable[AccountState]]) -> AccountState:
        entry = self._entries.get(user_id)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        state = await load()
        if self.ttl > 0:
            self._entries[user_id] = (now + self.ttl, state)
        return state

    def bump(self, user_id: str) -> None:
        """One more message recorded by this process: keep the cached count honest."""
        entry = self._entries.get(user_id)
        if entry is not None:
            entry[1].messages += 1

    def invalidate(self, user_id: str | None = None) -> None:
        if user_id is None:
            self._entries.clear()
        else:
            self._entries.pop(user_id, None)


ENTITLEMENT_CACHE: web.AppKey[EntitlementCache] = web.AppKey("entitlement_cache", EntitlementCache)

_NOTICE_TEXT = {
    "usage_warning": (
        "info",
        "You have used 80 percent of the messages included in your plan this month.",
    ),
    "usage_allowance_reached": (
        "warning",
        "You have used all messages included in your plan for this billing period; "
        "answers continue for now.",
    ),
    "usage_over_allowance": (
        "info",
        "You are past the messages included in your plan for this billing period.",
    ),
    "payment_failed": (
        "warning",
        "Your last payment for Home Mind failed. Please update your payment method "
        "to keep your plan.",
    ),
}


def notice(code: str) -> Notice:
    level, message = _NOTICE_TEXT[code]
    return Notice(code=code, message=message, level="warning" if level == "warning" else "info")


def _counts_as_message(request: web.Request) -> bool:
    """A new user turn (not a verified tool-result follow-up); decided by the chat route."""
    counted = request.get(COUNTS_AS_MESSAGE)
    return True if counted is None else bool(counted)


class BillingGate:
    def __init__(
        self,
        app: web.Application,
        config: BillingConfig,
        inner: ChatGate | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self._app = app
        self._config = config
        self._inner: ChatGate = inner or DefaultChatGate()
        self.clock = clock
        self.cache = EntitlementCache(config.cache_seconds)
        self._storing: set[asyncio.Future[None]] = set()

    def now(self) -> datetime:
        return self.clock()

    @property
    def billing_enabled(self) -> bool:
        return self._app[SETTINGS].billing_enabled

    async def account_state(self, user_id: str, *, fresh: bool = False) -> AccountState:
        async def load() -> AccountState:
            async with self._app[DB_SESSIONMAKER].begin() as session:
                return await load_account_state(
                    session,
                    user_id,
                    now=self.now(),
                    config=self._config,
                    billing_enabled=self.billing_enabled,
                )

        if fresh:
            self.cache.invalidate(user_id)
        return await self.cache.get(user_id, load)

    async def admit(self, request: web.Request, principal: InstallationPrincipal) -> ChatAccess:
        if not self.billing_enabled:
            access = await self._inner.admit(request, principal)
            access.context["billing_tier"] = "self-hosted"
            access.context[USAGE_ID] = secrets.token_hex(16)
            return access
        state = await self.account_state(principal.user_id)
        if state.tier == "free":
            raise ApiError(
                ErrorCode.SUBSCRIPTION_REQUIRED,
                "Home Mind needs a subscription for this account: choose a plan in the "
                "dashboard to keep talking.",
            )
        notices: list[Notice] = []
        if state.grace_until is not None and await self._claim(
            state, "payment_failed", self.now().date().isoformat()
        ):
            notices.append(notice("payment_failed"))
        if state.tier == "byok":
            access = await self._inner.admit(request, principal)
            if access.key_source != "installation":
                raise ApiError(
                    ErrorCode.NO_API_KEY,
                    "Your plan uses your own Anthropic API key: add it to this installation "
                    "in the dashboard.",
                )
        else:
            notices.extend(await self._usage_notices(request, state))
            server_key = request.app[SETTINGS].anthropic_api_key
            if server_key is None or not server_key.get_secret_value():
                LOGGER.error("Managed plan in use but ANTHROPIC_API_KEY is not configured")
                raise ApiError(
                    ErrorCode.UPSTREAM_UNAVAILABLE, "The assistant is not available right now."
                )
            access = ChatAccess(api_key=server_key.get_secret_value(), key_source="server")
        access.notices.extend(notices)
        access.context["billing_tier"] = state.tier
        access.context[USAGE_ID] = secrets.token_hex(16)
        return access

    async def _usage_notices(self, request: web.Request, state: AccountState) -> list[Notice]:
        limits = state.limits
        if limits is None or not _counts_as_message(request):
            return []
        ordinal = state.messages + 1
        if ordinal > limits.hard_limit:
            raise ApiError(
                ErrorCode.USAGE_LIMIT_REACHED,
                "This account has used far more messages than its plan includes this "
                "billing period; chat resumes when the next period starts.",
            )
        period_key = state.period_start.isoformat()
        found: list[Notice] = []
        for code in usage_notice_codes(ordinal, limits):
            if code in ONCE_PER_PERIOD and not await self._claim(state, code, period_key):
                continue
            if code == "usage_over_allowance" and any(
                n.code == "usage_allowance_reached" for n in found
            ):
                continue
            found.append(notice(code))
        return found

    async def _claim(self, state: AccountState, code: str, period_key: str) -> bool:
        given = state.extra.setdefault("notices_given", set())
        if (code, period_key) in given:
            return False
        async with self._app[DB_SESSIONMAKER].begin() as session:
            won = await claim_notice(session, state.user_id, code, period_key)
        given.add((code, period_key))
        return won

    async def record(
        self,
        request: web.Request,
        principal: InstallationPrincipal,
        access: ChatAccess,
        outcome: ChatOutcome,
    ) -> None:
        # Shielded: a disconnect that cancels the handler must not lose the row. The caller
        # waits for the first attempt only; a database outage is retried in the background.
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._store_usage(principal, access, outcome, first))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)
        await asyncio.shield(first)

    async def _store_usage(
        self,
        principal: InstallationPrincipal,
        access: ChatAccess,
        outcome: ChatOutcome,
        first: asyncio.Future[None],
    ) -> None:
        """`record_usage` until it is stored: the insert is idempotent (one id per request),
        so a retry after a commit whose answer was lost cannot count the request twice."""
        delay = _STORE_FIRST_DELAY
        for attempt in range(1, _STORE_ATTEMPTS + 1):
            try:
                await self.record_usage(principal, access, outcome)
            except Exception as err:
                if not is_database_outage(err) or attempt == _STORE_ATTEMPTS:
                    if not first.done():
                        first.set_exception(err)
                    else:
                        LOGGER.error(
                            "Usage of request_id=%s not recorded after %d attempts: %r",
                            outcome.request_id,
                            attempt,
                            err,
                        )
                    return
                LOGGER.warning(
                    "Database unavailable recording usage of request_id=%s; retrying in %.1fs",
                    outcome.request_id,
                    delay,
                )
                if not first.done():
                    first.set_result(None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _STORE_MAX_DELAY)
            else:
                if not first.done():
                    first.set_result(None)
                return

    async def wait_stored(self) -> None:
        """Until every usage row being retried is stored or given up (tests, shutdown)."""
        while self._storing:
            await asyncio.wait(set(self._storing))

    async def record_usage(
        self, principal: InstallationPrincipal, access: ChatAccess, outcome: ChatOutcome
    ) -> bool:
        """Insert the usage row of `outcome.request_id`; True for the one call that did."""
        usage = outcome.usage
        spent = usage.input_tokens + usage.output_tokens > 0
        counts = outcome.counts_as_message and (outcome.completed or spent)
        usage_id = access.context.get(USAGE_ID)
        if not isinstance(usage_id, str):
            # Admitted elsewhere: fall back to the request id, scoped to the installation.
            usage_id = hashlib.sha256(
                f"{principal.installation_id}|{outcome.request_id}".encode()
            ).hexdigest()
        values = {
            "id": usage_id,
            "request_id": outcome.request_id[:64],
            "user_id": principal.user_id,
            "installation_id": principal.installation_id,
            "model": outcome.model[:100],
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cost_micro_usd": estimate_cost_micro_usd(outcome.model, usage),
            "counts_as_message": counts,
            "completed": outcome.completed,
            "error_code": outcome.error_code,
            "key_source": access.key_source,
            "created_at": self.now(),
        }
        # One statement needs no transaction around it: on PostgreSQL the autocommit
        # engine (db/reads.py) spares the BEGIN and COMMIT round trips; SQLite commits.
        async with self._app[DB_READER].connect() as connection:
            inserted = await insert_usage(connection, values)
            await connection.commit()
        if inserted and counts:
            self.cache.bump(principal.user_id)
        return inserted
