"""The SOP knowledge base: shipped defaults, Markdown/YAML import, chat edits, the card at 开始, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bot.cli.root import main as cli
from core.errors import InvalidInput
from core.lifecycle.sop import default_library, edit_step, parse_markdown, parse_yaml, to_markdown
from tests.conftest import runtime_of
from tests.test_lifecycle_support import Person, in_progress

BRAKES = """# 刹车异响
分类: 机械类
故障类型: 刹车异响
关键词: 刹车, 制动, 吱吱

1. 路试确认异响出现在制动时
2. 拆检刹车片厚度，拍下测量读数
   ![测量位置](https://example.com/brake.png)
3. 更换刹车片并拍下新片型号
> 常见误判：轮毂轴承异响常被当成刹车异响。
"""


def test_shipped_defaults_cover_both_categories_and_the_12_step_example() -> None:
    library = default_library()
    assert {s.key for s in library.sops} >= {"机械类", "电控类", "机械类/空调不制冷"}
    ac = library.find("机械类", "空调不制冷，出风口热风")
    assert ac is not None and len(ac.steps) == 12 and ac.notes
    assert library.find("机械类", "底盘异响").key == "机械类"  # type: ignore[union-attr]
    assert library.find("电控类", "中控黑屏").key == "电控类"  # type: ignore[union-attr]
    assert library.find(None, "x") is None


def test_markdown_round_trip() -> None:
    [sop] = parse_markdown(BRAKES)
    assert sop.key == "机械类/刹车异响" and sop.keywords == ("刹车", "制动", "吱吱")
    assert sop.steps[1].images == ("https://example.com/brake.png",)
    assert parse_markdown(to_markdown(sop)) == [sop]


@pytest.mark.parametrize("text, message", [
    ("1. 没有标题", "第 1 行"),
    ("# 无分类\n1. 步骤", "缺少「分类」"),
    ("# 无步骤\n分类: 机械类\n", "至少需要一个步骤"),
    ("# 坏图\n分类: 机械类\n1. 看图 ![x](javascript:alert(1))", "http"),
    ("# 乱写\n分类: 机械类\n随便写点什么", "第 3 行"),
    ("", "没有找到 SOP"),
])
def test_markdown_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_markdown(text)


def test_yaml_import() -> None:
    pytest.importorskip("yaml")
    sops = parse_yaml("""
- category: 电控类
  fault_type: 无法启动
  keywords: [无法启动, 打不着]
  steps:
    - 测量蓄电池电压
    - text: 读取故障码
      images: [https://example.com/obd.png]
""")
    assert sops[0].key == "电控类/无法启动" and sops[0].steps[1].images == ("https://example.com/obd.png",)
    with pytest.raises(InvalidInput, match="分类"):
        parse_yaml("- steps: [a]")


def test_step_edits() -> None:
    [sop] = parse_markdown(BRAKES)
    assert edit_step(sop, "add", None, "试车").steps[-1].text == "试车"
    assert edit_step(sop, "set", 1, "新第一步").steps[0].text == "新第一步"
    assert len(edit_step(sop, "delete", 2).steps) == 2
    with pytest.raises(InvalidInput, match="1–3"):
        edit_step(sop, "delete", 9)


async def sop_version(client: TestClient) -> int:
    async with runtime_of(client).uow() as uow:
        latest = await uow.latest_config("sop")
    return latest[0] if latest else 0


async def test_admin_imports_and_edits_in_chat_and_technicians_get_it(app_client: TestClient) -> None:
    admin = Person(app_client, "admin")
    await admin.say("SOP 导入\n" + BRAKES)
    assert "已导入 1 条" in await admin.last_text()
    assert await sop_version(app_client) == 1
    await admin.say("SOP 加步骤 机械类/刹车异响 试车确认异响消除")
    await admin.say("SOP 改步骤 机械类/刹车异响 1 路试并记录制动时的车速")
    assert await sop_version(app_client) == 3
    await admin.say("SOP 删步骤 机械类/刹车异响 9")
    assert "1–4" in await admin.last_text() and await sop_version(app_client) == 3
    await admin.say("SOP 列表")
    assert "机械类/刹车异响｜刹车异响（4 步）" in await admin.last_text()

    await in_progress(app_client, "cust-brake", "tech-wang", text="刹车的时候吱吱异响")
    card = await Person(app_client, "tech-wang").last_card("sop")
    assert card["title"] == "SOP｜刹车异响（4 步）"
    assert card["body"].startswith("1. 路试并记录制动时的车速") and "4. 试车确认异响消除" in card["body"]
    async with runtime_of(app_client).uow() as uow:
        kinds = [e for e in await uow.config_history("sop")]
    assert [k["actor_id"] for k in kinds] == ["admin"] * 3


async def test_sop_editing_is_for_admins(app_client: TestClient) -> None:
    for who in ("tech-wang", "sup-li", "cust-sop"):
        user = Person(app_client, who)
        await user.say("SOP 导入\n" + BRAKES)
        assert "没有权限" in await user.last_text()
    admin = Person(app_client, "admin")
    await admin.say("SOP 导入\n# 坏\n1. 无分类")
    assert "缺少「分类」" in await admin.last_text()
    await admin.say("SOP 乱七八糟")
    assert "SOP 命令" in await admin.last_text()
    assert await sop_version(app_client) == 0


def test_cli_import_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    source = tmp_path / "brakes.md"
    source.write_text(BRAKES, encoding="utf-8")
    assert cli(["sop", "import", str(source)]) == 0
    assert "version 1" in capsys.readouterr().out
    assert cli(["sop", "export", "机械类/刹车异响"]) == 0
    assert parse_markdown(capsys.readouterr().out)[0].title == "刹车异响"
    bad = tmp_path / "bad.md"
    bad.write_text("# 坏\n1. 无分类", encoding="utf-8")
    assert cli(["sop", "import", str(bad)]) == 1
    assert "缺少「分类」" in capsys.readouterr().err
