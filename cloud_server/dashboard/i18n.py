"""Translation-ready text: every sentence a page shows goes through `_` (gettext).

Only English ships today; a catalogue installed with `install(translations)` (any
`gettext.NullTranslations` subclass, e.g. from Babel) translates templates and messages.
"""

from __future__ import annotations

import gettext

_translations: gettext.NullTranslations = gettext.NullTranslations()


def install(translations: gettext.NullTranslations) -> None:
    global _translations  # noqa: PLW0603 - one process-wide catalogue
    _translations = translations


def _(message: str) -> str:
    return _translations.gettext(message)


def translations() -> gettext.NullTranslations:
    return _translations
