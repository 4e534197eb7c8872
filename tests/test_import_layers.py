"""The house rules on imports, checked on every run (docs/architecture.md explains them).

- core/ and nlp/ import no platform, SQL or HTTP library, and no outer package of ticketbot.
- Packages import each other only downward: each list below is lowest first, and a module may
  import its own group or a lower one (groups on the same level do not import each other).
- Every dependency declared in pyproject.toml is imported somewhere.

Every import statement counts, including those inside functions; imports under
`if TYPE_CHECKING:` count too, except the few listed in TYPE_ONLY_UPWARD.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "nlp", "storage", "adapters", "bot")

# Top level: lowest first; a tuple is one level whose packages do not import each other.
TOP_LEVELS: list[tuple[str, ...]] = [("core", "nlp"), ("storage", "adapters"), ("bot",)]
# Inside a package: group → level. A module's group is the longest listed prefix of its name.
INNER_LEVELS: dict[str, list[tuple[str, ...]]] = {
    "core": [
        ("core",),  # the shared kernel: the modules at core/'s top level
        ("core.audit",),
        ("core.masterdata",),  # issue 20: intake prefill reads master data
        ("core.intake",),
        ("core.lifecycle",),
        ("core.dispatch",),
        ("core.sla",),
        ("core.reports",),
        ("core.hub",),  # issue 23: the work-order hub (API v1 commands, webhook events) sits on every capability
    ],
    "bot": [
        ("bot.settings_parts",),  # issues 21/22: the settings' groups, mixed into bot.settings
        ("bot.settings",),
        ("bot.service_config", "bot.token_cache", "bot.photo_store", "bot.demo", "bot.audit_key",
         "bot.metrics",  # bot.metrics: issue 23, counters the loops increment
         "bot.tracking_links", "bot.signature_store",  # issue 21: tracking links, sign-off signatures
         "bot.background_processes"),  # issue 24: report and export worker processes, below the service
        ("bot.rules",),
        ("bot.chat",),
        ("bot.jobs",),
        ("bot.runtime",),
        ("bot.api_v1", "bot.sms"),  # issue 23: /api/v1/, mounted by bot.web; issue 21: SMS (bot.platforms, bot.web)
        ("bot.platforms", "bot.web", "bot.worker"),
        ("bot.console",),  # issue 22: the staff console's pages use bot.web's runtime key and page setup
        ("bot.web.app",),  # the application mounts everything, the console included
        ("bot.cli",),
    ],
    "storage": [("storage.sqlite",), ("storage.transactions",), ("storage",)],
    "adapters": [("adapters", "adapters.base"), ("adapters.wecom", "adapters.feishu", "adapters.dingtalk")],
    "nlp": [("nlp",)],
}
# The persistence port names the records of the capabilities it persists, for typing only.
TYPE_ONLY_UPWARD = {
    ("core.repository", "core.dispatch.store"),
    ("core.repository", "core.lifecycle.photos"),
    ("core.repository", "core.masterdata.store"),  # issue 20: uow.masterdata()
}
# What the domain must never touch: platforms, SQL, HTTP, queues.
FORBIDDEN_IN_DOMAIN = {
    "aiohttp", "aiosqlite", "alembic", "arq", "asyncpg", "dingtalk_stream", "http", "httpx", "lark_oapi",
    "psycopg", "psycopg2", "redis", "requests", "sqlalchemy", "sqlite3", "sqlmodel", "urllib3", "websockets",
    "wechatpy",
}
# Distributions whose import name differs, or that are loaded by name rather than imported.
IMPORT_NAMES = {"dingtalk-stream": "dingtalk_stream", "lark-oapi": "lark_oapi",
                "pydantic-settings": "pydantic_settings", "pyyaml": "yaml", "pillow": "PIL",
                "tencentcloud-sdk-python-sms": "tencentcloud"}
LOADED_BY_URL = {"asyncpg"}  # SQLAlchemy loads the driver named in `postgresql+asyncpg://`
LOADED_BY_LIBRARY = {"lxml"}  # openpyxl's write-only workbooks serialise with lxml when it is installed


@dataclass(frozen=True)
class Import:
    source: str  # module doing the import
    target: str  # absolute module (or package) imported
    line: int
    type_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    type_only = _type_checking_lines(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, alias.name, node.lineno, node.lineno in type_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                target = candidate if is_module(candidate) else base
                yield Import(source, target, node.lineno, node.lineno in type_only)


def _level(levels: list[tuple[str, ...]], module: str) -> tuple[int, str]:
    """(level, group) of a module: the longest listed prefix wins."""
    best: tuple[int, str] | None = None
    for level, groups in enumerate(levels):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (best is None or len(group) > len(best[1])):
                best = (level, group)
    assert best is not None, f"{module} is in no group of the import layers: add it to the lists in this test"
    return best


def violation(imp: Import) -> str | None:
    """Why `imp` breaks the layering, or None."""
    source_top, target_top = imp.source.split(".")[0], imp.target.split(".")[0]
    if target_top not in PACKAGES:
        if source_top in ("core", "nlp") and target_top in FORBIDDEN_IN_DOMAIN:
            return f"{source_top}/ must not import {target_top}"
        return None
    if source_top != target_top:
        source_level = _level(TOP_LEVELS, source_top)[0]
        target_level = _level(TOP_LEVELS, target_top)[0]
        return None if target_level < source_level else f"{source_top}/ must not import {target_top}/"
    levels = INNER_LEVELS[source_top]
    (source_level, source_group), (target_level, target_group) = _level(levels, imp.source), _level(levels, imp.target)
    if source_group == target_group or target_level < source_level:
        return None
    if imp.type_only and (imp.source, imp.target) in TYPE_ONLY_UPWARD:
        return None
    return f"{source_group} (level {source_level}) must not import {target_group} (level {target_level})"


def test_imports_go_only_downward() -> None:
    problems = [
        f"{imp.source}:{imp.line} imports {imp.target}: {why}"
        for path in source_files()
        for imp in imports_of(path)
        if (why := violation(imp)) is not None
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("source", "target", "type_only", "broken"),
    [
        ("core.intake.tickets", "core.service", False, False),  # capability → kernel
        ("core.service", "core.intake.tickets", False, True),  # kernel → capability
        ("core.dispatch.handlers", "core.sla.tracking", False, True),  # capability → a higher one
        ("core.sla.escalation", "core.dispatch.live", False, False),
        ("core.repository", "core.dispatch.store", True, False),  # listed, type-only
        ("core.repository", "core.dispatch.store", False, True),  # the same at run time
        ("core.model", "sqlalchemy", False, True),
        ("nlp.rules", "aiohttp", False, True),
        ("core.model", "storage.tables", False, True),
        ("storage.tables", "core.model", False, False),
        ("storage.inbox", "adapters.base", False, True),  # same level, different package
        ("adapters.feishu.config", "bot.settings", True, True),
        ("adapters.wecom.api", "adapters.feishu.api", False, True),
        ("bot.chat.sop", "bot.runtime", False, True),
        ("bot.cli.sop", "bot.runtime", False, False),
        ("bot.web.api", "bot.platforms.wecom", False, True),
        ("storage.sqlite.prepared", "storage.tables", False, True),
    ],
)
def test_the_rule_itself(source: str, target: str, type_only: bool, broken: bool) -> None:
    assert (violation(Import(source, target, 1, type_only)) is not None) is broken


def test_every_module_is_in_a_layer() -> None:
    for path in source_files():
        name = module_name(path)
        _level(TOP_LEVELS, name.split(".")[0])
        if name not in PACKAGES:  # a package's own __init__ only says what it owns
            _level(INNER_LEVELS[name.split(".")[0]], name)


def test_every_declared_dependency_is_used() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    imported = {imp.target.split(".")[0] for path in source_files() for imp in imports_of(path)}
    unused = []
    for requirement in project["dependencies"]:
        distribution = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        name = IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))
        if name not in imported and name not in LOADED_BY_URL | LOADED_BY_LIBRARY:
            unused.append(distribution)
    assert unused == []
