"""Rate limiting: one `Limiter` interface, an in-process and a Redis-backed store.

Rates use GCRA (`gcra.py`: one "theoretical arrival time" per key, a steady rate plus a
burst, no window-boundary doubling). A concurrency cap counts requests in flight per key.

`REDIS_URL` chooses the store (`setup.py`): without it one instance limits in its own
memory (`local.py`, self-hosted); with it every instance runs the same atomic Lua scripts
(`lua.py`) against one Redis (`redis_store.py`), so several instances enforce one budget.

The policies live with the components they protect: chat's limits in
`chat/rate_policy.py` (fails open when Redis is down), login throttling in
`accounts/throttle.py` (fails closed).
"""
