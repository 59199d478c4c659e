"""The one price table: estimated Anthropic cost per model, in micro-USD per million tokens.

Figures are Anthropic's public list prices (USD per million tokens); they only feed the
*estimated* cost shown to users and operators, never what Stripe charges. Unknown models
fall back to their family (opus / sonnet / haiku) and then to the sonnet price, so an
estimate is never zero for a real call.
"""

from __future__ import annotations

from dataclasses import dataclass

from homemind_client.models import Usage


@dataclass(frozen=True, slots=True)
class ModelPrice:
    # USD per million tokens.
    input: float
    output: float
    cache_read: float
    cache_write: float


PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 0.10, 1.25),
    "claude-3-5-haiku": ModelPrice(0.80, 4.0, 0.08, 1.0),
}
_FAMILY_DEFAULTS = {
    "opus": PRICES["claude-opus-4-5"],
    "sonnet": PRICES["claude-sonnet-4-5"],
    "haiku": PRICES["claude-haiku-4-5"],
}


def price_of(model: str) -> ModelPrice:
    if model in PRICES:
        return PRICES[model]
    # Dated ids ("claude-sonnet-4-5-20250929") and aliases share the base model's price.
    for name in sorted(PRICES, key=len, reverse=True):
        if model.startswith(name):
            return PRICES[name]
    for family, price in _FAMILY_DEFAULTS.items():
        if family in model:
            return price
    return _FAMILY_DEFAULTS["sonnet"]


def estimate_cost_micro_usd(model: str, usage: Usage) -> int:
    """Estimated cost of one request in millionths of a dollar (rounded to nearest)."""
    price = price_of(model)
    # tokens x USD/Mtok = micro-USD exactly.
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_input_tokens * price.cache_read
        + usage.cache_creation_input_tokens * price.cache_write
    )
    return round(total)
