"""Every document and checklist row the code, tests and docs point at exists in this repo.

Contributors have only the repository: a comment citing a file that is not in it (or a
row the checklist does not have) sends them nowhere.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parents[2]
COMPONENTS = ("cloud_server", "homemind_client", "custom_components/home_mind")
CHECKLIST = "docs/security-checklist.md"

# A Markdown file named in text: `docs/api.md`, `SECURITY.md`, `tests/README.md` ...
_MD_REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")
# "docs/security-checklist.md row 20", "... rows 1-8", "... rows 4 and 19", "rows 9, 11, 12"
_ROW_REFERENCE = re.compile(
    re.escape(CHECKLIST) + r"\s+rows?\s+(\d+(?:\s*(?:-|,|and)\s*\d+)*)", re.IGNORECASE
)
# A repository path in backticks inside a Markdown file: `homemind_client/models/chat.py`.
_PATH_IN_DOC = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|json|yaml|toml|txt))`")
# Places outside the repo that earlier comments pointed at.
_OUTSIDE = ("design document", "DESIGN" + ".md", "/work/" + "shared", "reference" + "/")
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".cfg", ".txt", ""}


@cache
def _tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = []
    for name in out.splitlines():
        path = ROOT / name
        if path.suffix in _TEXT_SUFFIXES and path.is_file() and path != Path(__file__):
            files.append(path)
    return files


def _texts() -> list[tuple[str, str]]:
    texts = []
    for path in _tracked_files():
        try:
            texts.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return texts


def _rows(spec: str) -> set[int]:
    rows: set[int] = set()
    for part in re.split(r"\s*(?:,|and)\s*", spec):
        low, _, high = part.partition("-")
        rows.update(range(int(low), int(high or low) + 1))
    return rows


def _checklist_rows() -> set[int]:
    text = (ROOT / CHECKLIST).read_text(encoding="utf-8")
    return {int(n) for n in re.findall(r"^\|\s*(\d+)\s*\|", text, re.MULTILINE)}


def _exists(reference: str, source: str) -> bool:
    if (ROOT / reference).is_file():
        return True
    # A name relative to the file that mentions it (e.g. docs/ linking docs/).
    if (ROOT / source).parent.joinpath(reference).is_file():
        return True
    # A module named inside its component, as docs/architecture.md does (`chat/gate.py`).
    return any((ROOT / component / reference).is_file() for component in COMPONENTS)


def test_every_markdown_file_named_exists() -> None:
    dangling = [
        f"{source}: {reference}"
        for source, text in _texts()
        for reference in _MD_REFERENCE.findall(text)
        if not _exists(reference, source)
    ]
    assert not dangling, "\n".join(dangling)


def test_every_cited_checklist_row_exists() -> None:
    rows = _checklist_rows()
    assert rows, f"{CHECKLIST} has no rows"
    dangling = [
        f"{source}: rows {sorted(_rows(spec) - rows)}"
        for source, text in _texts()
        for spec in _ROW_REFERENCE.findall(text)
        if _rows(spec) - rows
    ]
    assert not dangling, "\n".join(dangling)


def test_docs_name_only_paths_that_exist() -> None:
    dangling = [
        f"{source}: {reference}"
        for source, text in _texts()
        if source.endswith(".md")
        for reference in _PATH_IN_DOC.findall(text)
        if not _exists(reference, source)
    ]
    assert not dangling, "\n".join(dangling)


def test_nothing_points_outside_the_repo() -> None:
    found = [
        f"{source}: {phrase!r}"
        for source, text in _texts()
        for phrase in _OUTSIDE
        if phrase.lower() in text.lower()
    ]
    assert not found, "\n".join(found)
