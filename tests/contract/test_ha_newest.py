"""Contract: the names our compat shims rely on exist in the newest HA users run (2026.11).

Tests run on HA 2025.4.4 (the newest that installs on Python 3.13). The newest release needs
Python 3.14, so its wheel is downloaded (no dependencies) and read with `ast`, never imported.
The old branch of each shim is checked against the installed 2025.4.4 the same way, so a
shim whose either side disappears fails here rather than on a user's machine.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NEWEST = "2026.11.0"
CACHE = Path(sys.prefix) / ".ha-wheels"


def _download(version: str) -> Path:
    CACHE.mkdir(exist_ok=True)
    found = sorted(CACHE.glob(f"homeassistant-{version}-*.whl"))
    if found:
        return found[0]
    command = [
        sys.executable, "-m", "pip", "download", f"homeassistant=={version}", "--no-deps",
        "--python-version", "3.14.9", "--only-binary=:all:", "--quiet", "-d", str(CACHE),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    found = sorted(CACHE.glob(f"homeassistant-{version}-*.whl"))
    if result.returncode != 0 or not found:
        pytest.skip(f"could not download homeassistant {version}: {result.stderr[-300:]}")
    return found[0]


class Source:
    """Module sources of one HA release, parsed on demand."""

    def __init__(self, read: dict[str, str]) -> None:
        self._read = read

    def tree(self, module: str) -> ast.Module:
        return ast.parse(self._read[module])

    def top_level_names(self, module: str) -> set[str]:
        names: set[str] = set()
        for node in self.tree(module).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.ImportFrom):
                names.update(alias.asname or alias.name for alias in node.names)
        return names

    def class_members(self, module: str, cls: str) -> set[str]:
        for node in self.tree(module).body:
            if isinstance(node, ast.ClassDef) and node.name == cls:
                members: set[str] = set()
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        members.update(t.id for t in item.targets if isinstance(t, ast.Name))
                return members
        raise AssertionError(f"class {cls} not found in {module}")


@pytest.fixture(scope="module")
def newest() -> Iterator[Source]:
    wheel = zipfile.ZipFile(_download(NEWEST))
    files = {_module_name(name): name for name in wheel.namelist() if name.endswith(".py")}
    yield Source(_LazyDict(lambda module: wheel.read(files[module]).decode()))
    wheel.close()


@pytest.fixture(scope="module")
def installed() -> Source:
    import importlib.util

    # Only the top package is located (importing the components would start HA machinery).
    spec = importlib.util.find_spec("homeassistant")
    assert spec is not None and spec.origin is not None
    root = Path(spec.origin).parent.parent
    files = {
        _module_name(str(path.relative_to(root))): path
        for path in (root / "homeassistant").rglob("*.py")
    }
    return Source(_LazyDict(lambda module: files[module].read_text()))


def _module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


class _LazyDict(dict[str, str]):
    def __init__(self, load: object) -> None:
        super().__init__()
        self._load = load

    def __missing__(self, key: str) -> str:
        value: str = self._load(key)  # type: ignore[operator]
        self[key] = value
        return value


CHAT_LOG = "homeassistant.components.conversation.chat_log"
MODELS = "homeassistant.components.conversation.models"
CONVERSATION = "homeassistant.components.conversation"
ENTITY = "homeassistant.components.conversation.entity"
LLM = "homeassistant.helpers.llm"
CONFIG_ENTRIES = "homeassistant.config_entries"


def test_newest_ha_has_the_new_branch_of_every_shim(newest: Source) -> None:
    chat_log = newest.class_members(CHAT_LOG, "ChatLog")
    assert {"async_provide_llm_data", "async_add_delta_content_stream"} <= chat_log
    assert {"unresponded_tool_results", "continue_conversation", "llm_api"} <= chat_log
    assert "result" in newest.class_members(CHAT_LOG, "ToolResultContent")
    assert {"as_llm_context", "satellite_id"} <= newest.class_members(MODELS, "ConversationInput")
    assert "async_get_result_from_chat_log" in newest.top_level_names(CONVERSATION)
    assert {"ConversationEntity", "ConverseError", "ChatLog"} <= newest.top_level_names(
        CONVERSATION
    )
    entity = newest.class_members(ENTITY, "ConversationEntity")
    assert {"_async_handle_message", "_attr_supports_streaming"} <= entity
    llm = newest.top_level_names(LLM)
    assert {"ToolResult", "ToolInput", "MergedAPI", "API", "async_register_api"} <= llm
    assert "LLM_API_ASSIST" in llm
    flow = newest.class_members(CONFIG_ENTRIES, "ConfigFlow")
    assert {"async_update_and_abort", "async_update_reload_and_abort"} <= flow


def test_installed_ha_has_one_branch_of_every_shim(installed: Source) -> None:
    """Whatever HA the tests run on (2025.4.4 or 2026.10.4), each shim finds one of its branches."""
    chat_log = installed.class_members(CHAT_LOG, "ChatLog")
    assert {"async_update_llm_data", "async_provide_llm_data"} & chat_log
    tool_result = installed.class_members(CHAT_LOG, "ToolResultContent")
    assert {"tool_result", "result"} & tool_result
    flow = installed.class_members(CONFIG_ENTRIES, "ConfigFlow")
    assert {"async_update_reload_and_abort", "async_update_and_abort"} & flow
