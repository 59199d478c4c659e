"""The distribution Home Assistant installs holds the client and nothing else.

Builds the real wheel (from a copy, so no build/ folder lands in the package) and reads it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "src" / source.name
    shutil.copytree(
        source, copy, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(copy)],
        check=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def test_client_wheel_holds_only_the_client_and_needs_only_aiohttp_and_pydantic(
    tmp_path: Path,
) -> None:
    wheel = _build_wheel(ROOT / "homemind_client", tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())

    packaged = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    tracked = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "homemind_client").rglob("*")
        if p.is_file() and (p.suffix == ".py" or p.name == "py.typed") and "build" not in p.parts
    }
    assert packaged == tracked
    assert metadata["Name"] == "homemind-client"
    requirements = sorted(re.split(r"[<>=!~;\[ ]", r)[0] for r in metadata.get_all("Requires-Dist"))
    assert requirements == ["aiohttp", "pydantic"]
