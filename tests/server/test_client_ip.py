"""Client IP from trusted proxies only (docs/security-checklist.md row 20)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cloud_server.accounts.app_keys import THROTTLE
from cloud_server.client_ip import _networks, ip_rate_key, resolve_client_ip
from cloud_server.settings import Settings
from tests.server.conftest import MakeApp
from tests.server.test_ratelimit import FakeClock

LB = _networks("10.0.0.0/8, 2001:db8:ffff::/48")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Untrusted peer: the header is the client's own words, ignored.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # Trusted peer: the rightmost address that is not one of our proxies.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.7"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # two header lines
        ("10.0.0.2", ["6.6.6.6, 2001:db8:1::5"], "2001:db8:1::5"),
        # Garbage in the chain stops the walk at the last address we can vouch for.
        ("10.0.0.2", ["198.51.100.1, not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", [], "10.0.0.2"),
        # Only proxies: the client is the first of them.
        ("10.0.0.2", ["10.0.0.9, 10.0.0.8"], "10.0.0.9"),
        # An IPv4 peer on an IPv6 socket is the same peer.
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_rightmost_untrusted_address(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert resolve_client_ip(peer, forwarded, LB) == expected


def test_no_trusted_proxies_by_default() -> None:
    assert Settings().trusted_proxies == ""
    assert resolve_client_ip("127.0.0.1", ["198.51.100.1"], _networks("")) == "127.0.0.1"


def test_ipv6_clients_share_a_key_per_64() -> None:
    assert ip_rate_key("2001:db8:1:2::5") == ip_rate_key("2001:db8:1:2:ffff::9")
    assert ip_rate_key("2001:db8:1:2::5") != ip_rate_key("2001:db8:1:3::5")
    assert ip_rate_key("198.51.100.1") == "198.51.100.1"


async def _spray(client: TestClient[Any, Any], forwarded: list[str]) -> list[int]:
    """One failed login per X-Forwarded-For value, each for another account."""
    statuses = []
    for i, value in enumerate(forwarded):
        response = await client.post(
            "/api/auth/login",
            json={"email": f"spray-{i}@example.test", "password": "some password"},
            headers={"X-Forwarded-For": value},
        )
        statuses.append(response.status)
    return statuses


async def test_spoofed_forwarded_for_does_not_change_the_rate_limit_key(
    make_app: MakeApp, server_settings: Settings
) -> None:
    # The test client connects from 127.0.0.1, which is not a trusted proxy here.
    client = await make_app(server_settings)
    client.app[THROTTLE].clock = FakeClock()  # type: ignore[attr-defined]
    statuses = await _spray(client, [f"198.51.100.{i}" for i in range(21)])
    assert statuses == [401] * 20 + [429]


async def test_forwarded_for_from_a_trusted_proxy_is_the_key(
    make_app: MakeApp, server_settings: Settings
) -> None:
    client = await make_app(server_settings.model_copy(update={"trusted_proxies": "127.0.0.1/32"}))
    client.app[THROTTLE].clock = FakeClock()  # type: ignore[attr-defined]
    # A different client behind the proxy each time: nobody exceeds 20 a minute ...
    assert await _spray(client, [f"198.51.100.{i}" for i in range(21)]) == [401] * 21
    # ... while one client behind it is limited, whatever it puts in front of the chain.
    same = [f"6.6.6.{i}, 203.0.113.7" for i in range(21)]
    assert await _spray(client, same) == [401] * 20 + [429]
