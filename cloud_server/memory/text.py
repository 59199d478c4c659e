"""Text handling for memory search: normalisation, tokens, stop words, stems.

Both SQL backends search with the same terms: the user's words lower-cased, without
stop words (en/de/fr/es/nl), stemmed with Snowball (the `snowballstemmer` package) and
matched as prefixes. Terms matching few of the household's facts are OR-ed, common ones
only count all together (COMMON_HITS below); BM25 (SQLite) / ts_rank_cd (PostgreSQL) then
rank by how many and how rare the matching terms are. Meaning beyond the words (a paraphrase,
another language) is the dense side's job (embedder.py); there is no synonym table.
Terms are built from `\\w` characters only, so no FTS operator of the user's ever
reaches a query string.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import re
import unicodedata

import snowballstemmer

_WORD = re.compile(r"\w+", re.UNICODE)
_SPACES = re.compile(r"\s+")


def _wordset(block: str) -> frozenset[str]:
    return frozenset(block.split())


# Words that carry no meaning for recall. Kept small: a longer list starts eating
# the content words of short questions.
STOP_WORDS: frozenset[str] = _wordset(
    """
    a an the and or but of to in on at for with by from as is are was were be been being
    am do does did done have has had i me my mine we us our ours you your yours he him his
    she her hers it its they them their theirs this that these those there here what which
    who whom whose when where why how can could would should will shall may might must
    please tell say said know any some all about again also just so than then too very
    s t d ll re ve m not no yes if into out up down over under what's whats let lets
    der die das den dem des ein eine einen einem einer eines und oder aber ist sind war
    waren bin bist sein ich mich mir mein meine meinen meinem meiner wir uns unser unsere
    du dich dir dein deine er ihn ihm sie ihr ihre es wie was wer wo wann warum welche
    welcher welches zu im am an auf mit von für aus bei nach vom zum zur noch auch nicht
    kein keine hat habe haben hast wird werden kannst kann bitte sag mal denn
    le la les un une des du de et ou mais est sont était je me moi mon ma mes nous notre
    nos tu te toi ton ta tes il elle ils elles leur leurs ce cette ces que qui quoi quel
    quelle quels quelles où comment pourquoi quand dans sur avec pour par au aux en ne pas
    y a ai as avons avez ont s'il stp svp dis
    el los las unos unas y o pero es son era soy yo mi mis nosotros nuestro nuestra tu tus
    su sus lo que quien cuál cual cuáles como cómo dónde donde cuándo cuando por para con
    sin al del se le les no ha he has hemos tiene tengo dime favor
    het een en of maar is zijn was waren ben ik mij me mijn wij we ons onze jij je jou
    jouw hij hem zij ze haar hun dat dit die wat wie waar wanneer waarom hoe welke te
    naar met voor uit bij van om op aan niet geen heeft heb hebben kun kan wil zeg eens
    """
)

# Extra words that only mean "the memory system" in remember/forget requests.
META_WORDS: frozenset[str] = _wordset(
    """
    forget remember remembered told tell telling said memory memories fact facts note
    stored store delete remove erase vergiss vergessen erinnere merk merke gesagt
    oublie oublier souviens rappelle dit olvida olvidar recuerda dije vergeet onthoud zei
    """
)

# A question's language is not known, and a fact's may differ from it: a word's stem is
# the shortest Snowball stem, among the languages we speak, that is still a prefix of the
# word (terms are matched as prefixes), so "allergic" and "allergies" meet at "allerg".
STEM_LANGUAGES = ("english", "german", "french", "spanish", "dutch")
_STEMMERS = tuple(snowballstemmer.stemmer(language) for language in STEM_LANGUAGES)
# Shorter stems than this match too much as prefixes; English's own stems may be a letter
# shorter ("dogs" -> "dog"), the others' would cut English words ("name" -> "nam").
MIN_STEM = 4
MIN_ENGLISH_STEM = 3


def normalize_content(content: str) -> str:
    """One spelling per fact: NFKC, lower case, collapsed spaces, no trailing punctuation."""
    text = unicodedata.normalize("NFKC", content).casefold()
    text = _SPACES.sub(" ", text).strip()
    return text.rstrip(" .!?;,")


def content_hash(content: str) -> str:
    return hashlib.sha256(normalize_content(content).encode()).hexdigest()


def clean_content(content: str) -> str:
    """What is stored: the user's text with collapsed whitespace."""
    return _SPACES.sub(" ", content).strip()


def fold(word: str, *, keep_accents: bool = False) -> str:
    """Lower case without diacritics (SQLite's `remove_diacritics` does the same on its side).

    PostgreSQL's 'simple' configuration keeps accents, so its terms keep them too.
    """
    if word.isascii():  # the common case: nothing to decompose (casefold == lower here)
        return word.lower()
    if keep_accents:
        return unicodedata.normalize("NFC", word.casefold())
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The shortest Snowball stem of `word` (en/de/fr/es/nl) that is a prefix of it."""
    # Cached: a search stems the words of every candidate fact, and words repeat.
    best = word
    for n, stemmer in enumerate(_STEMMERS):
        candidate = stemmer.stemWord(word)
        shortest = MIN_ENGLISH_STEM if n == 0 else MIN_STEM
        if shortest <= len(candidate) < len(best) and word.startswith(candidate):
            best = candidate
    return best


def words(text: str, *, keep_accents: bool = False) -> list[str]:
    return [fold(w, keep_accents=keep_accents) for w in _WORD.findall(text)]


def content_terms(text: str, *, drop_meta: bool = False, keep_accents: bool = False) -> list[str]:
    """The meaningful words of `text`, in order, unique, not yet stemmed."""
    seen: set[str] = set()
    out: list[str] = []
    for word in words(text, keep_accents=keep_accents):
        folded = fold(word)
        if folded in STOP_WORDS or (drop_meta and folded in META_WORDS):
            continue
        if len(word) < 2 and not word.isdigit():
            continue
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out


def query_terms(text: str, *, drop_meta: bool = False, keep_accents: bool = False) -> list[str]:
    """The search terms for `text`: its content words, stemmed, unique.

    Each term is matched as a prefix by the backends (so 'daughter' finds "daughter's").
    """
    terms: list[str] = []
    seen: set[str] = set()
    for word in content_terms(text, drop_meta=drop_meta, keep_accents=keep_accents):
        for piece in _WORD.findall(fold(word, keep_accents=keep_accents)):
            term = stem(piece)
            if term and term not in seen:
                seen.add(term)
                terms.append(term)
    return terms[:32]


# Terms too short for a prefix match stay exact (a prefix of two letters matches half the index).
MIN_PREFIX = 3


def fts5_term(term: str) -> str:
    quoted = '"' + term.replace('"', "") + '"'
    return quoted + "*" if len(term) >= MIN_PREFIX else quoted


def ts_term(term: str) -> str | None:
    safe = "".join(ch for ch in term if ch.isalnum() or ch == "_")
    if not safe:
        return None
    return f"{safe}:*" if len(safe) >= MIN_PREFIX else safe


def tsquery(terms: list[str]) -> str | None:
    """A PostgreSQL `to_tsquery('simple', ...)` expression built only from `\\w` terms."""
    return " | ".join(p for p in map(ts_term, terms) if p) or None


class Relevance:
    """`relevance` with the query's side computed once (a search scores many facts)."""

    __slots__ = ("_wanted",)

    def __init__(self, query: str) -> None:
        self._wanted = [stem(w) for w in content_terms(query, drop_meta=True)]

    def __call__(self, content: str) -> float:
        wanted = self._wanted
        if not wanted:
            return 0.0
        have, ordered = _content_stems(content)
        hits = 0
        for term in wanted:
            if term in have:
                hits += 1
                continue
            # A stem of the fact starting with the term: the sorted stems that do are
            # contiguous, from where the term would be inserted.
            at = bisect.bisect_left(ordered, term)
            if at < len(ordered) and ordered[at].startswith(term):
                hits += 1
                continue
            # A stem of the fact (of at least MIN_PREFIX letters) the term starts with.
            if any(term[:n] in have for n in range(MIN_PREFIX, len(term))):
                hits += 1
        return hits / len(wanted)


@functools.lru_cache(maxsize=16384)
def _content_stems(content: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """A fact's stems, as a set and sorted (the same facts are scored search after search)."""
    have = frozenset(stem(w) for w in words(content))
    return have, tuple(sorted(have))


def relevance(query: str, content: str) -> float:
    """Share of the query's own words (no expansions, no meta words) found in `content`."""
    return Relevance(query)(content)


# A term matching more facts of a household than this is "common": ranking every fact
# it matches costs more than the term tells (BM25 gives it little weight anyway). See
# SqliteMemoryBackend._sql and PostgresMemoryBackend._sql (sql_backend.py) for how common
# terms are searched.
COMMON_HITS = 300


class SearchPlan:
    """The terms of one search (the user's own words), plus the relevance scorer for the
    final order. `extra` (terms beyond the user's words) is empty since the synonym
    table went; the backends still accept it."""

    __slots__ = ("extra", "own", "relevance")

    def __init__(self, query: str, *, keep_accents: bool = False) -> None:
        self.own = query_terms(query, keep_accents=keep_accents)
        self.extra: list[str] = []
        self.relevance = Relevance(query)

    @property
    def terms(self) -> list[str]:
        return self.own + self.extra

    def rerank(self, contents: list[str]) -> list[int]:
        """Indexes of `contents` (in engine order) sorted by relevance; stable among equals."""
        scores = [self.relevance(c) for c in contents]
        return sorted(range(len(contents)), key=lambda i: -scores[i])


def estimate_tokens(text: str) -> int:
    """Rough token count (about four characters per token)."""
    return max(1, (len(text) + 3) // 4)
