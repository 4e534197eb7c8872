"""The SOP knowledge base: per category and fault type, numbered steps with optional images.

Pure: parsing (Markdown, YAML), lookup, editing and rendering. Storage is a config version
(kind "sop") holding the whole library; the shipped defaults live in core/sop_data/*.md.

Markdown format (one or more SOPs per file):

    # 空调不制冷
    分类: 机械类
    故障类型: 空调不制冷            (omit for the category's general SOP)
    关键词: 空调, 不制冷, 制冷差     (words in the fault description that select this SOP)

    1. 确认故障现象……
       ![高低压表接法](https://example.com/sop/ac-2.png)
    2. ……
    > 常见误判：……                 (notes shown under the steps)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from core.errors import InvalidInput

MAX_STEPS = 50
MAX_STEP_TEXT = 500
_STEP = re.compile(r"^\s*(\d{1,3})\s*[.、)）]\s*(.*)$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_META = re.compile(r"^\s*[-*]?\s*(分类|类别|category|故障类型|故障|fault_type|关键词|keywords)\s*[:：]\s*(.*)$",
                   re.IGNORECASE)
_META_KEYS = {"分类": "category", "类别": "category", "category": "category", "故障类型": "fault_type",
              "故障": "fault_type", "fault_type": "fault_type", "关键词": "keywords", "keywords": "keywords"}
_SPLIT = re.compile(r"[,，、;；\s]+")


@dataclass(frozen=True, slots=True)
class SopStep:
    text: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sop:
    category: str
    title: str
    steps: tuple[SopStep, ...]
    fault_type: str = ""  # "" = the category's general SOP
    keywords: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.category}/{self.fault_type}" if self.fault_type else self.category

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "fault_type": self.fault_type, "title": self.title,
                "keywords": list(self.keywords), "notes": list(self.notes),
                "steps": [{"text": s.text, "images": list(s.images)} for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "SOP") -> Sop:
        if not isinstance(data, dict):
            raise InvalidInput(f"{where}：应为一个对象（分类、标题、步骤）。")
        category = str(data.get("category") or data.get("分类") or "").strip()
        fault_type = str(data.get("fault_type") or data.get("故障类型") or "").strip()
        title = str(data.get("title") or data.get("标题") or fault_type or category).strip()
        raw_steps = data.get("steps") or data.get("步骤") or []
        if not isinstance(raw_steps, list):
            raise InvalidInput(f"{where}：steps 应为列表。")
        steps = []
        for i, raw in enumerate(raw_steps, 1):
            if isinstance(raw, str):
                steps.append(_step(raw, [], f"{where} 第 {i} 步"))
            elif isinstance(raw, dict):
                images = raw.get("images") or raw.get("图片") or []
                if isinstance(images, str):
                    images = [images]
                steps.append(_step(str(raw.get("text") or raw.get("内容") or ""), list(images), f"{where} 第 {i} 步"))
            else:
                raise InvalidInput(f"{where} 第 {i} 步：应为文字或 {{text, images}}。")
        return validated(Sop(category=category, fault_type=fault_type, title=title, steps=tuple(steps),
                             keywords=_words(data.get("keywords") or data.get("关键词") or []),
                             notes=tuple(str(n).strip() for n in (data.get("notes") or []) if str(n).strip())),
                         where)


def _words(value: Any) -> tuple[str, ...]:
    items = _SPLIT.split(value) if isinstance(value, str) else [str(v) for v in value]
    return tuple(dict.fromkeys(w.strip() for w in items if w.strip()))


def _checked_urls(urls: list[str], where: str) -> tuple[str, ...]:
    for url in urls:
        if not re.match(r"^https?://\S+$", str(url)):
            raise InvalidInput(f"{where}：图片地址必须以 http:// 或 https:// 开头：{url}")
    return tuple(str(u) for u in urls)


def _step(text: str, images: list[str], where: str) -> SopStep:
    urls = _checked_urls([*images, *(url for _alt, url in _IMAGE.findall(text))], where)
    clean = _IMAGE.sub("", text).strip()
    if not clean:
        raise InvalidInput(f"{where}：步骤内容不能为空。")
    if len(clean) > MAX_STEP_TEXT:
        raise InvalidInput(f"{where}：步骤内容太长（{len(clean)} 字，最多 {MAX_STEP_TEXT} 字）。")
    return SopStep(clean, urls)


def validated(sop: Sop, where: str = "SOP") -> Sop:
    if not sop.category:
        raise InvalidInput(f"{where}：缺少「分类」（例如 机械类、电控类）。")
    if not sop.steps:
        raise InvalidInput(f"{where}（{sop.key}）：至少需要一个步骤。")
    if len(sop.steps) > MAX_STEPS:
        raise InvalidInput(f"{where}（{sop.key}）：步骤太多（{len(sop.steps)}，最多 {MAX_STEPS}）。")
    return sop


def parse_markdown(text: str) -> list[Sop]:
    """Parse one or more SOPs; errors name the line."""
    sops: list[Sop] = []
    current: dict[str, Any] | None = None

    def finish() -> None:
        if current is not None:
            sops.append(validated(Sop(category=current["category"], fault_type=current["fault_type"],
                                      title=current["title"], steps=tuple(current["steps"]),
                                      keywords=current["keywords"], notes=tuple(current["notes"])),
                                  f"第 {current['line']} 行的 SOP「{current['title']}」"))

    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("<!--"):
            continue
        if stripped.startswith("# "):
            finish()
            current = {"title": stripped[2:].strip(), "category": "", "fault_type": "", "keywords": (),
                       "steps": [], "notes": [], "line": number}
            continue
        if current is None:
            raise InvalidInput(f"第 {number} 行：SOP 应以「# 标题」开头。")
        meta = _META.match(stripped) if not current["steps"] else None
        step = _STEP.match(stripped)
        if meta:
            key = _META_KEYS[meta.group(1).lower()]
            value = meta.group(2).strip()
            current[key] = _words(value) if key == "keywords" else value
        elif step:
            current["steps"].append(_step(step.group(2), [], f"第 {number} 行"))
        elif stripped.startswith(">"):
            current["notes"].append(stripped.lstrip("> ").strip())
        elif current["steps"]:
            # A continuation line: more text or images for the step above.
            last = current["steps"][-1]
            more = _IMAGE.sub("", stripped).strip()
            images = _checked_urls([url for _alt, url in _IMAGE.findall(stripped)], f"第 {number} 行")
            current["steps"][-1] = replace(last, text=f"{last.text} {more}".strip()[:MAX_STEP_TEXT],
                                           images=last.images + images)
        else:
            raise InvalidInput(f"第 {number} 行：看不懂「{stripped[:30]}」。步骤请写成「1. 内容」。")
    finish()
    if not sops:
        raise InvalidInput("没有找到 SOP：请以「# 标题」开头，写上「分类: 机械类」和编号步骤。")
    return sops


def parse_yaml(text: str) -> list[Sop]:
    try:
        import yaml  # PyYAML: optional; Markdown needs nothing
    except ImportError as error:
        raise InvalidInput("服务器未安装 YAML 支持，请改用 Markdown 格式导入。") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidInput(f"YAML 格式有误：{str(error)[:200]}") from error
    if isinstance(data, dict):
        data = data.get("sops", data.get("SOP", [data]))
    if not isinstance(data, list) or not data:
        raise InvalidInput("YAML 里没有找到 SOP 列表。")
    return [Sop.from_dict(item, f"第 {i} 个 SOP") for i, item in enumerate(data, 1)]


def parse_any(text: str) -> list[Sop]:
    """Markdown when it starts with a heading, otherwise YAML."""
    body = text.strip()
    if not body:
        raise InvalidInput("请在命令后附上 SOP 内容（Markdown 或 YAML）。")
    return parse_markdown(body) if body.startswith("#") else parse_yaml(body)


def to_markdown(sop: Sop) -> str:
    lines = [f"# {sop.title}", f"分类: {sop.category}"]
    if sop.fault_type:
        lines.append(f"故障类型: {sop.fault_type}")
    if sop.keywords:
        lines.append(f"关键词: {', '.join(sop.keywords)}")
    lines.append("")
    for i, step in enumerate(sop.steps, 1):
        lines.append(f"{i}. {step.text}")
        lines.extend(f"   ![图]({url})" for url in step.images)
    lines.extend(f"> {note}" for note in sop.notes)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class SopLibrary:
    sops: tuple[Sop, ...]

    def find(self, category: str | None, text: str = "") -> Sop | None:
        """The fault-type SOP of the category whose keywords the text hits most, else the general one."""
        if not category:
            return None
        same = [s for s in self.sops if s.category == category]
        scored = [(sum(1 for w in (*s.keywords, s.fault_type) if w and w in text), s) for s in same if s.fault_type]
        best = max(scored, key=lambda pair: pair[0], default=(0, None))
        if best[0] > 0:
            return best[1]
        return next((s for s in same if not s.fault_type), None)

    def get(self, key: str) -> Sop | None:
        return next((s for s in self.sops if s.key == key.strip()), None)

    def upsert(self, new: Iterable[Sop]) -> SopLibrary:
        by_key = {s.key: s for s in self.sops}
        for sop in new:
            by_key[sop.key] = sop
        return SopLibrary(tuple(sorted(by_key.values(), key=lambda s: s.key)))

    def without(self, key: str) -> SopLibrary:
        return SopLibrary(tuple(s for s in self.sops if s.key != key))

    def to_dict(self) -> dict[str, Any]:
        return {"sops": [s.to_dict() for s in self.sops]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SopLibrary:
        return cls(tuple(Sop.from_dict(item) for item in data.get("sops", [])))


def edit_step(sop: Sop, op: str, index: int | None, text: str = "") -> Sop:
    """op: add (append, or insert before `index`), set, delete. `index` is 1-based."""
    steps = list(sop.steps)
    if (op != "add" or index is not None) and (
            index is None or not 1 <= index <= len(steps) + (1 if op == "add" else 0)):
            raise InvalidInput(f"步骤序号应在 1–{len(steps)} 之间。", key=sop.key)
    if op == "add":
        new = _step(text, [], "新步骤")
        steps.insert((index - 1) if index else len(steps), new)
    elif op == "set":
        steps[index - 1] = _step(text, [], f"第 {index} 步")  # type: ignore[operator]
    elif op == "delete":
        del steps[index - 1]  # type: ignore[operator]
    else:
        raise InvalidInput(f"不支持的操作：{op}")
    return validated(replace(sop, steps=tuple(steps)), f"SOP {sop.key}")


def render_steps(sop: Sop) -> str:
    lines = []
    for i, step in enumerate(sop.steps, 1):
        lines.append(f"{i}. {step.text}")
        lines.extend(f"   图：{url}" for url in step.images)
    lines.extend(f"⚠ {note}" for note in sop.notes)
    return "\n".join(lines)


def default_library() -> SopLibrary:
    folder = resources.files("core.lifecycle").joinpath("sop_data")
    sops: list[Sop] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            sops.extend(parse_markdown(entry.read_text(encoding="utf-8")))
    return SopLibrary(()).upsert(sops)
