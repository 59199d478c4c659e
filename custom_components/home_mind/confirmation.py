"""Whether the user's words confirm what Home Mind proposed ("yes", "ja, mach das").

The confirmation gate of automations.py asks this of the user's own turn, never of the
model's reading of it: a turn confirms when it starts with a yes of the user's language
(English is always understood too) and says neither no nor "but" (a yes with a change is
a new request, not a confirmation).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final


def _phrases(text: str) -> tuple[str, ...]:
    """Phrases separated by "|", longest first (so "ok" never hides "okay")."""
    return tuple(sorted(text.split("|"), key=len, reverse=True))


# As the phrases read after _words(): no accents, no apostrophes.
_YES: Final[dict[str, tuple[str, ...]]] = {
    language: _phrases(phrases)
    for language, phrases in {
        "en": "yes|yeah|yep|yup|sure|ok|okay|confirm|confirmed|do it|go ahead|please do|"
        "correct|right|absolutely",
        "de": "ja|jawohl|jap|klar|genau|ok|okay|bestatigt|bestatige|mach das|mach es|gerne|"
        "passt|richtig|sicher",
        "fr": "oui|ouais|daccord|dac|ok|okay|vas y|allez y|confirme|confirmer|cest bon|"
        "parfait|exactement|bien sur",
        "es": "si|vale|claro|ok|okay|confirmo|confirmado|adelante|de acuerdo|hazlo|correcto|"
        "perfecto|por supuesto",
        "nl": "ja|jazeker|jawel|zeker|prima|ok|oke|okay|doe maar|bevestig|bevestigd|akkoord|"
        "goed|klopt|graag",
    }.items()
}
# No, not, don't, but, wait, stop, cancel, never: en, de, fr, es, nl.
_NO: Final = frozenset(
    _phrases(
        "no|not|dont|but|wait|stop|cancel|never|"
        "nein|nicht|kein|aber|warte|halt|abbrechen|"
        "non|pas|mais|attends|annule|annuler|jamais|"
        "nunca|pero|espera|cancela|cancelar|"
        "nee|niet|geen|maar|wacht|annuleer|nooit"
    )
)
_WORD: Final = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    """Lower-case words without accents ("Sí" -> "si", "bestätige" -> "bestatige")."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in folded if not unicodedata.combining(char))
    # "don't" -> "dont", "d'accord" -> "daccord"; "vas-y" -> "vas y".
    return _WORD.findall(plain.replace("'", "").replace("\u2019", ""))


def is_confirmation(text: str, language: str | None) -> bool:
    """Whether `text` (one user turn) says yes to the proposal, in `language` or English."""
    words = _words(text)
    if not words or len(words) > 8:
        return False
    base = (language or "en").replace("_", "-").split("-", 1)[0].lower()
    for phrase in _YES.get(base, ()) + _YES["en"]:
        said = phrase.split()
        if words[: len(said)] == said:
            # "Doe maar" is a yes; a no or a "but" after the yes takes it back.
            return not any(word in _NO for word in words[len(said) :])
    return False
