"""Follow-up questions: whether an answer asks the user something back.

A voice satellite reopens its microphone when a turn's result has `continue_conversation`.
HA derives it from the last text in the chat log, which in our case may end with a notice
("You have used 80 percent ...") after Claude's question, and which on HA 2025.4 knows only
"?" and ";". We decide it here, on Claude's own answer of the turn, the same way on every
HA release: the answer's last sentence ends with a question mark of any script.
"""

from __future__ import annotations

from typing import Final

# Latin/Cyrillic "?", full-width U+FF1F (Chinese, Japanese), Arabic "؟", the Greek question
# mark U+037E (and the ASCII ";" Greek keyboards type), Armenian "՞", Ethiopic "፧".
QUESTION_MARKS: Final = ("?", "\uff1f", "؟", "\u037e", "՞", "፧")
_GREEK_SEMICOLON: Final = ";"
# Closing quotes, brackets and Markdown emphasis may follow the mark: «Die Küche?»
_TRAILING: Final = " \t\n\"')]*_\u201d\u2019\u00bb"


def asks_back(answer: str, language: str | None = None) -> bool:
    """Whether the answer ends with a question to the user."""
    end = answer.rstrip(_TRAILING)
    if end.endswith(QUESTION_MARKS):
        return True
    # Greek writes its question mark as ";"; elsewhere a trailing ";" is not a question.
    return bool(language and language.lower().startswith("el") and end.endswith(_GREEK_SEMICOLON))
