"""What is a lasting fact, in English, German, French, Spanish and Dutch."""

from __future__ import annotations

import pytest

from cloud_server.memory.filters import check_fact
from cloud_server.memory.text import fts5_term, query_terms, relevance, tsquery

LASTING = [
    "My daughter is called Ana",
    "I like the bedroom at 19 degrees",
    "Ana's birthday is on 12 May",
    "The garage door is locked every night at 10",
    "Turn the porch light off every night at 11",
    "We have a dog named Max",
    "Ana is allergic to peanuts",
    "The wifi password is on the fridge",
    "Meine Tochter heißt Ana",
    "Ich mag das Schlafzimmer bei 19 Grad",
    "Das Garagentor wird jeden Abend abgeschlossen",
    "Ma fille s'appelle Ana",
    "J'aime la chambre à 19 degrés",
    "Mi hija se llama Ana",
    "Me gusta el dormitorio a 19 grados",
    "Mijn dochter heet Ana",
    "Ik hou van een slaapkamer op 19 graden",
]

NOT_FACTS = {
    "transient_state": [
        "The light is on",
        "the kitchen light is off now",
        "It's 21 degrees now",
        "It is 21 degrees",
        "Humidity is 45 %",
        "Das Licht ist an",
        "Es sind jetzt 21 Grad",
        "La lumière est allumée",
        "Il fait 21 degrés maintenant",
        "La luz está encendida",
        "Ahora hace 21 grados",
        "Het licht staat aan",
        "Het is nu 21 graden",
    ],
    "command": [
        "Turn on the kitchen light",
        "Please turn off the lights in the living room",
        "Schalte das Küchenlicht ein",
        "Allume la lumière de la cuisine",
        "Enciende la luz de la cocina",
        "Zet het licht in de keuken aan",
    ],
    "command_echo": [
        "I turned on the kitchen light",
        "Done, the kitchen light is on.",
        "The kitchen light has been turned on",
        "Ich habe das Licht eingeschaltet",
        "J'ai allumé la lumière",
        "He encendido la luz",
        "Ik heb het licht aangezet",
    ],
    "device_specification": [
        "light.kitchen: on, light.hall: off",
        "Model: Hue White A19, Firmware: 1.104.2, Power: 9 W, Lumen: 806 lm",
        '{"entity_id": "sensor.temp", "state": "21.5"}',
        "Manufacturer: Aqara, model: WSDCGQ11LM, battery 3.0 V, range 0-100 %, 1 Hz updates",
    ],
}


@pytest.mark.parametrize("content", LASTING)
def test_lasting_facts_are_kept(content: str) -> None:
    assert check_fact(content).keep, check_fact(content)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(c, r) for r, cases in NOT_FACTS.items() for c in cases],
)
def test_transient_things_are_refused(content: str, reason: str) -> None:
    verdict = check_fact(content)
    assert not verdict.keep
    # A thing refused for a neighbouring reason is still refused; the reason is for logs.
    assert verdict.reason in {"transient_state", "command", "command_echo", "device_specification"}


def test_query_terms_drop_stop_words_and_stem() -> None:
    terms = query_terms("What are my dogs' names?")
    assert terms == ["dog", "name"]
    assert "what" not in terms and "is" not in terms and "my" not in terms
    # Snowball stems, matched as prefixes: the forms of a word meet, in each language.
    assert query_terms("allergic") == query_terms("allergies") == ["allerg"]
    assert query_terms("Hunde") == query_terms("Hund") == ["hund"]
    assert query_terms("perros")[0] == "perr" and "perro".startswith(query_terms("perros")[0])


def test_relevance_matches_word_forms_without_synonyms() -> None:
    assert relevance("Who is allergic?", "Ana has allergies") == 1.0
    # No synonym table: meaning beyond the words is the dense side's job.
    assert relevance("What is my daughter's name?", "My daughter is called Ana") == 0.5


@pytest.mark.parametrize("raw", ['a" OR body:*', "NEAR(x y) ^z", "x' ; DROP TABLE memories"])
def test_search_expressions_contain_only_quoted_words(raw: str) -> None:
    for part in map(fts5_term, query_terms(raw)):
        assert part.startswith('"') and part.rstrip("*").endswith('"')
        assert '"' not in part.rstrip("*")[1:-1]
    ts = tsquery(query_terms(raw)) or ""
    assert all(ch.isalnum() or ch in " |:*_" for ch in ts)


def test_relevance_counts_the_querys_own_words() -> None:
    assert relevance("forget what I told you about the garage", "The garage code is 1") == 1.0
    assert relevance("garage code", "The garage is full") == 0.5
    assert relevance("boat", "The garage is full") == 0.0
