"""Segmenters share no terms and no spare dictionary: each owns one copy, taken from a live one."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from nlp import segmenter
from nlp.segmenter import Segmenter, base_dictionary_loaded

ROOT = Path(__file__).resolve().parents[1]
TEXT = "雨刮器异响，发动机无法启动，咣当咣当响"


def test_a_segmenter_copied_from_a_live_one_sees_none_of_its_terms() -> None:
    first = Segmenter(["雨刮器异响", "咣当咣当", "无法启动"])
    first.warm()
    assert base_dictionary_loaded()
    second = Segmenter(["发动机无法"])
    second.warm()  # copied from `first`, first's terms undone
    assert first._tokenizer is not None and second._tokenizer is not None
    assert first._tokenizer.FREQ is not second._tokenizer.FREQ
    assert "雨刮器异响" in first._tokenizer.FREQ and "雨刮器异响" not in second._tokenizer.FREQ
    assert "雨刮器异" not in second._tokenizer.FREQ  # the prefixes add_word created are gone too

    pristine, total = segmenter._load_from_disk()
    assert second._base_total == total
    restored = dict(second._tokenizer.FREQ)
    for key, value in second._undo.items():
        if value is None:
            del restored[key]
        else:
            restored[key] = value
    assert restored == pristine  # exactly jieba's dictionary under second's own terms

    del first
    gc.collect()
    fresh = Segmenter(["发动机无法"])
    fresh.warm()  # copied from `second` now
    assert fresh.cut(TEXT) == second.cut(TEXT)
    assert "发动机无法" in second.cut(TEXT) and "雨刮器异响" not in second.cut(TEXT)


def test_without_a_live_segmenter_the_dictionary_comes_from_disk() -> None:
    gc.collect()
    for live in list(segmenter._donors):
        segmenter._donors.discard(live)
    assert not base_dictionary_loaded()
    alone = Segmenter(["咣当咣当"])
    assert alone.cut("咣当咣当的响") == ["咣当咣当", "的", "响"]
    assert base_dictionary_loaded()


def test_warming_does_not_import_pkg_resources() -> None:
    """jieba would import it only to find its own file: ~12 MB and ~80 ms of a serve's start-up."""
    code = ("import sys; from nlp.segmenter import Segmenter; s = Segmenter(['异响']); s.warm();"
            "print(s.cut('底盘有异响')); print('pkg_resources' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout.split("\n")
    assert out[:2] == ["['底盘', '有', '异响']", "False"]
