"""What a person hears for each Home Mind error (English, as in translations/en.json)."""

from __future__ import annotations

SPOKEN_EN = {
    "invalid_token": (
        "Home Mind no longer accepts this installation's token. "
        "Please sign in again in the Home Assistant settings."
    ),
    "installation_revoked": (
        "This Home Mind installation was removed. "
        "Please set it up again in the Home Assistant settings."
    ),
    "subscription_required": (
        "Your Home Mind subscription is not active. "
        "Please check your plan in the Home Mind dashboard."
    ),
    "usage_limit_reached": "You have used all the messages of your Home Mind plan for this month.",
    "no_api_key": (
        "Home Mind has no Anthropic API key for this installation yet. "
        "Please add one in the Home Mind dashboard."
    ),
    "rate_limited": "I'm getting too many requests right now. Please try again in a moment.",
    "upstream_unavailable": (
        "The AI service is not available right now. Please try again in a moment."
    ),
    "upstream_rejected_key": (
        "The AI service refused your Anthropic API key. "
        "Please check the key in the Home Mind dashboard."
    ),
    "validation_error": "Home Mind could not understand this request.",
}
CANNOT_CONNECT_EN = (
    "I can't reach Home Mind right now. Please check the internet connection and try again."
)
TIMEOUT_EN = "Home Mind took too long to answer. Please try again."
UNKNOWN_EN = "Something went wrong with Home Mind. Please try again."
