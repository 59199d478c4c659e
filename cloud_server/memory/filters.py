"""What is not a fact: transient states, one-off commands, command echoes, spec dumps.

Applied to everything the model stores (the remember/update tools and after-turn
extraction); the owner's own API writes are taken as given. The rules are
deliberately conservative in one direction: a sentence with a habit or preference
marker ("always", "prefers", "jeden Abend", ...) is kept even when it mentions a
device state, because "turn the porch light off every night at 11" is a lasting rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_F = re.IGNORECASE | re.UNICODE

# Lasting-ness markers in en/de/fr/es/nl: habits, preferences, identity.
_LASTING = re.compile(
    r"\b("
    r"always|usually|normally|generally|never|every|each|daily|weekly|weekdays?|weekends?|"
    r"prefers?|preferred|likes?|loves?|hates?|dislikes?|enjoys?|wants?|favou?rite|allergic|"
    r"should|must|rule|remember that|mornings|evenings|nights|"
    r"immer|meistens|normalerweise|nie|niemals|jede[nmrs]?|täglich|mag|liebt?|hasst|"
    r"bevorzugt?|lieber|lieblings\w*|möchte|will|allergisch|morgens|abends|nachts|"
    r"toujours|jamais|chaque|souvent|habituellement|aime|adore|déteste|préfère|préféré[e]?|"
    r"veut|allergique|le matin|le soir|"
    r"siempre|nunca|cada|normalmente|le gusta|me gusta|gusta|encanta|odia|prefiere|prefiero|"
    r"favorit[oa]|quiere|alérgic[oa]|por las mañanas|por las noches|"
    r"altijd|nooit|elke|iedere|meestal|houdt van|hou van|lievelings\w*|voorkeur|"
    r"wil graag|allergisch|'s ochtends|'s avonds"
    r")\b",
    _F,
)

# "Now" markers: what follows describes this moment, not a lasting truth.
_NOW = re.compile(
    r"\b(now|right now|currently|at the moment|at present|just now|"
    r"jetzt|gerade|momentan|aktuell|zurzeit|im moment|"
    r"maintenant|actuellement|en ce moment|"
    r"ahora|ahora mismo|actualmente|en este momento|"
    r"nu|momenteel|op dit moment)\b",
    _F,
)

# A device/room state: "is on", "ist aus", "est allumée", "está apagada", "staat aan".
_STATE = re.compile(
    r"\b("
    r"(is|are|was|were)\s+(now\s+|currently\s+|still\s+)?"
    r"(on|off|open|opened|closed|locked|unlocked|running|playing|paused|idle|charging|"
    r"dimmed|unavailable|armed|disarmed|heating|cooling)|"
    r"(ist|sind)\s+(jetzt\s+|gerade\s+|noch\s+)?"
    r"(an|aus|ein|offen|geschlossen|zu|abgeschlossen|eingeschaltet|ausgeschaltet)|"
    r"(est|sont)\s+(maintenant\s+|encore\s+)?"
    r"(allumée?s?|éteinte?s?|ouverte?s?|fermée?s?|verrouillée?s?)|"
    r"(está|están)\s+(ahora\s+)?"
    r"(encendid[oa]s?|apagad[oa]s?|abiert[oa]s?|cerrad[oa]s?)|"
    r"(staat|staan|is|zijn)\s+(nu\s+)?(aan|uit|open|dicht|gesloten|op slot)"
    r")\b"
    # Only a state that ends the clause: "is on" in "her birthday is on 12 May" is no state.
    r"(?=\s*(?:[.!?,;]|$|(?:now|again|still|jetzt|gerade|wieder|maintenant|ahora|nu)\b))",
    _F,
)

# A measurement: "21 degrees", "21°C", "45 %", "230 V", "1200 W".
_MEASURE = re.compile(
    r"\d+(?:[.,]\d+)?\s*(°\s*[cf]?|degrees?|grad|degrés?|grados?|graden|%|percent|prozent|"
    r"kwh|wh|w|kw|v|a|ma|mah|lm|lux|hz|db|ppm|hpa|mbar)(?!\w)",
    _F,
)

_POLITE = r"(?:(?:please|bitte|s'il te plaît|s'il vous plaît|por favor|alsjeblieft|graag)\s*,?\s*)?"

# An imperative device command at the start of the sentence.
_COMMAND = re.compile(
    r"^\s*" + _POLITE + r"(?:can you\s+|could you\s+|kannst du\s+|peux-tu\s+|puedes\s+|kun je\s+)?"
    r"("
    r"turn|switch|set|open|close|lock|unlock|play|pause|stop|start|dim|brighten|increase|"
    r"decrease|raise|lower|activate|deactivate|arm|disarm|run|toggle|"
    r"schalte|schalt|mach|stelle|stell|öffne|schließe|spiele|starte|stoppe|dimme|"
    r"allume|éteins|ouvre|ferme|mets|règle|joue|lance|arrête|baisse|monte|"
    r"enciende|apaga|abre|cierra|pon|sube|baja|reproduce|activa|desactiva|"
    r"zet|doe|sluit|speel|start|dim"
    r")\b",
    _F,
)

# Reports of something just done: the assistant's or the user's echo of a command.
_ECHO = re.compile(
    r"\b("
    r"(turned|switched)\s+(on|off)|has been (turned|switched|set|opened|closed|locked)|"
    r"i(?:'ve| have)? (turned|switched|set|opened|closed|locked|unlocked|started|stopped)|"
    r"(ein|aus)geschaltet|angemacht|ausgemacht|geöffnet|geschlossen habe|habe .* gestellt|"
    r"j'ai (allumé|éteint|ouvert|fermé|réglé|mis)|a été (allumée?|éteinte?|ouverte?|fermée?)|"
    r"(he|ha) (encendido|apagado|abierto|cerrado|puesto)|"
    r"(heb|is) .*(aangezet|uitgezet|aangedaan|uitgedaan|geopend|gesloten)"
    r")\b",
    _F,
)
_ECHO_START = re.compile(
    r"^\s*(done|ok|okay|sure|alright|erledigt|fertig|c'est fait|d'accord|hecho|listo|klaar|oké)\b",
    _F,
)

_ENTITY_ID = re.compile(
    r"\b(light|switch|sensor|binary_sensor|climate|cover|media_player|fan|lock|"
    r"input_boolean|automation|script|scene|camera|vacuum|person|device_tracker|"
    r"number|select|button|weather|alarm_control_panel|water_heater)\.[a-z0-9_]+\b"
)
_KEY_VALUE = re.compile(r"(^|[\n,;])\s*[\w .()/-]{2,30}\s*[:=]\s*\S", re.UNICODE)
_SPEC_WORDS = re.compile(
    r"\b(firmware|model(?: number)?|serial|manufacturer|hersteller|modèle|fabricante|"
    r"sw_version|hw_version|ip address|mac address|zigbee|z-wave|protocol|specifications?)\b",
    _F,
)

MIN_CHARS = 6
MAX_FACT_CHARS = 500


@dataclass(frozen=True, slots=True)
class Verdict:
    keep: bool
    reason: str = ""


KEEP = Verdict(True)


def check_fact(content: str) -> Verdict:
    """Whether `content` is a lasting fact worth remembering; the reason when it is not."""
    text = content.strip()
    if len(text) < MIN_CHARS or len(text.split()) < 2:
        return Verdict(False, "too_short")
    if _is_spec_dump(text):
        return Verdict(False, "device_specification")
    if len(text) > MAX_FACT_CHARS:
        return Verdict(False, "too_long")
    lasting = bool(_LASTING.search(text))
    if _COMMAND.search(text) and not lasting:
        return Verdict(False, "command")
    if (_ECHO.search(text) or _ECHO_START.search(text)) and not lasting:
        return Verdict(False, "command_echo")
    if _NOW.search(text) and (_STATE.search(text) or _MEASURE.search(text)) and not lasting:
        return Verdict(False, "transient_state")
    if _STATE.search(text) and not lasting and len(text.split()) <= 8:
        return Verdict(False, "transient_state")
    if _MEASURE.search(text) and not lasting and _looks_like_reading(text):
        return Verdict(False, "transient_state")
    return KEEP


def _looks_like_reading(text: str) -> bool:
    """'It's 21 degrees', 'Humidity is 45 %': a sensor reading, not a preference."""
    return bool(
        re.match(
            r"^\s*(it'?s|it is|the \w+( \w+)? (is|reads|shows)|es sind|es ist|il fait|"
            r"hace|het is|la temp\w*|die temp\w*|\w+ (is|ist|est|es|está) (at |bei |à |a |op )?\d)",
            text,
            _F,
        )
    )


def _is_spec_dump(text: str) -> bool:
    if len(_ENTITY_ID.findall(text)) >= 2:
        return True
    if text.lstrip().startswith(("{", "[")) and text.rstrip().endswith(("}", "]")):
        return True
    if len(_KEY_VALUE.findall(text)) >= 3:
        return True
    if len(_MEASURE.findall(text)) >= 3:
        return True
    return bool(_SPEC_WORDS.search(text) and len(_MEASURE.findall(text)) >= 1)
