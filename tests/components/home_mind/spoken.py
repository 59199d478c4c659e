"""What a person hears for each Home Mind error (English, as in translations/en.json)."""

from __future__ import annotations

from homemind_client.models import ErrorCode

SPOKEN_EN = {
    ErrorCode.INVALID_TOKEN: (
        "Home Mind no longer accepts this installation's token. "
        "Please sign in again in the Home Assistant settings."
    ),
    ErrorCode.INSTALLATION_REVOKED: (
        "This Home Mind installation was removed. "
        "Please set it up again in the Home Assistant settings."
    ),
    ErrorCode.SUBSCRIPTION_REQUIRED: (
        "Your Home Mind subscription is not active. "
        "Please check your plan in the Home Mind dashboard."
    ),
    ErrorCode.USAGE_LIMIT_REACHED: (
        "You have used all the messages of your Home Mind plan for this month."
    ),
    ErrorCode.NO_API_KEY: (
        "Home Mind has no Anthropic API key for this installation yet. "
        "Please add one in the Home Mind dashboard."
    ),
    ErrorCode.RATE_LIMITED: (
        "I'm getting too many requests right now. Please try again in a moment."
    ),
    ErrorCode.UPSTREAM_UNAVAILABLE: (
        "The AI service is not available right now. Please try again in a moment."
    ),
    ErrorCode.UPSTREAM_REJECTED_KEY: (
        "The AI service refused your Anthropic API key. "
        "Please check the key in the Home Mind dashboard."
    ),
    ErrorCode.VALIDATION_ERROR: "Home Mind could not understand this request.",
}
CANNOT_CONNECT_EN = (
    "I can't reach Home Mind right now. Please check the internet connection and try again."
)
TIMEOUT_EN = "Home Mind took too long to answer. Please try again."
UNKNOWN_EN = "Something went wrong with Home Mind. Please try again."
