"""A private jieba tokenizer per rule set, without keeping a spare copy of the dictionary.

Loading jieba's dictionary takes ~1 s and ~60 MB, so it is read from disk only when no warm
`Segmenter` is alive. Every warmed Segmenter owns one prefix dictionary (its terms added) and
an undo log of what its terms changed; the next Segmenter copies a live one's dictionary
(~30 ms, ~15 MB for the table: the words themselves are shared) and undoes the donor's terms
before adding its own. So memory is one dictionary per live rule set and no pristine base
besides. The global `jieba` tokenizer is never touched: rule terms cannot leak into other code
that uses jieba, nor from one rule set into another (a dry run, another runtime, the CLI).
"""

from __future__ import annotations

import gc
import re
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jieba

# Added terms get at least this frequency: high enough that jieba keeps them whole
# (无法启动 instead of 无法/启动), low enough not to swallow common words around them.
TERM_FREQUENCY = 20_000

_donors_lock = threading.Lock()
_donors: weakref.WeakSet[Segmenter] = weakref.WeakSet()  # warmed segmenters, to copy a dictionary from


def _import_jieba() -> None:
    """`import jieba` without pkg_resources (~12 MB and ~80 ms: jieba's only use of it is to find
    its own dictionary file, which it then opens by path instead)."""
    if "jieba" in sys.modules:
        return
    blocked = "pkg_resources" not in sys.modules
    if blocked:
        sys.modules["pkg_resources"] = None  # type: ignore[assignment]  # makes `import pkg_resources` fail
    try:
        import jieba  # noqa: F401  (imported here, in the warm-up thread: it costs ~0.3 s of start-up)
    finally:
        if blocked and sys.modules.get("pkg_resources", 0) is None:
            del sys.modules["pkg_resources"]


def _load_from_disk() -> tuple[dict[str, int], int]:
    """jieba's default prefix dictionary and total frequency, parsed from its text file."""
    _import_jieba()
    import jieba

    # Parse jieba's dictionary text in Python instead of `initialize()`: its cache path is
    # one marshal.load that holds the GIL for up to ~0.5 s, freezing the event loop even
    # from a worker thread; this loop lets other threads run every few milliseconds.
    # The cyclic GC is paused meanwhile: the ~1M allocations would otherwise trigger full
    # collections that hold the GIL for a few hundred ms. Reference counting still runs.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        loader = jieba.Tokenizer()
        with loader.get_dict_file() as dictionary_file:
            prefix_dict: tuple[dict[str, int], int] = loader.gen_pfdict(dictionary_file)  # jieba is untyped
            return prefix_dict
    finally:
        if gc_was_enabled:
            gc.enable()


def _pristine_dictionary() -> tuple[dict[str, int], int]:
    """A dictionary of jieba's words only, owned by the caller: a live segmenter's, terms undone."""
    with _donors_lock:
        donor = next(iter(_donors), None)  # a strong reference: it stays alive while we copy
    if donor is None or donor._tokenizer is None:
        return _load_from_disk()
    # Copied outside the lock (~30 ms): a warmed donor's dictionary is never written again.
    freq, total, undo = dict(donor._tokenizer.FREQ), donor._base_total, donor._undo
    for key, value in undo.items():
        if value is None:
            del freq[key]
        else:
            freq[key] = value
    return freq, total


def base_dictionary_loaded() -> bool:
    """Whether a new Segmenter can warm from memory (fast) rather than from jieba's file."""
    with _donors_lock:
        return any(True for _ in _donors)


class Segmenter:
    """Cuts normalised text into tokens with jieba, keeping the given terms whole."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._terms = tuple(terms)
        self._tokenizer: jieba.Tokenizer | None = None
        self._undo: dict[str, int | None] = {}
        self._base_total = 0
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load the dictionary and register the terms now (blocking; call it off the event loop)."""
        if self._tokenizer is not None:
            return
        with self._lock:
            if self._tokenizer is not None:
                return
            freq, total = _pristine_dictionary()
            import jieba

            tokenizer = jieba.Tokenizer()
            tokenizer.FREQ = freq
            tokenizer.total = total
            tokenizer.initialized = True
            undo: dict[str, int | None] = {}  # what the terms changed: key -> jieba's own value (None: absent)
            for term in self._terms:
                if len(term) > 1 and _jieba_can_hold(term):
                    for end in range(1, len(term) + 1):
                        undo.setdefault(term[:end], freq.get(term[:end]))
                    tokenizer.add_word(term, freq=max(TERM_FREQUENCY, freq.get(term, 0)))
            self._undo = undo
            self._base_total = total
            self._tokenizer = tokenizer
            with _donors_lock:
                _donors.add(self)

    @property
    def warmed(self) -> bool:
        return self._tokenizer is not None

    def cut(self, text: str) -> list[str]:
        """Tokens of `text` in order; their concatenation is `text`; a Latin word is never cut.
        Warms on first use."""
        if self._tokenizer is None:
            self.warm()
        assert self._tokenizer is not None
        # HMM off: every term we care about is in the dictionary, and guessing new words
        # would glue unknown characters onto keywords (and costs ~40% throughput).
        tokens: list[str] = self._tokenizer.lcut(text, HMM=False)  # jieba is untyped
        return _whole_latin_words(tokens) if _LATIN_PAIR.search(text) else tokens


# ASCII letters, digits and '_' make up a Latin word (what regex `\b` calls a word character).
_LATIN_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_LATIN_PAIR = re.compile(r"[A-Za-z0-9_]{2}")


def _whole_latin_words(tokens: list[str]) -> list[str]:
    """Glue tokens back where jieba cut inside a Latin word: a dictionary word such as `error`
    or `hi` is split out of `onerror` or `nothing`, and terms must match whole words only.
    A Chinese character next to a Latin word is a boundary (OBD报错), as are spaces and
    punctuation."""
    result: list[str] = []
    glue = False  # the previous token ends with a Latin word character
    for token in tokens:
        if glue and token[0] in _LATIN_WORD_CHARS:
            result[-1] += token
        else:
            result.append(token)
        glue = token[-1] in _LATIN_WORD_CHARS
    return result


def _jieba_can_hold(term: str) -> bool:
    # jieba only forms words from CJK, ASCII letters/digits and +#&._%- ; other terms are
    # still matched (as joined tokens), they just cannot be dictionary words.
    return all(("\u4e00" <= ch <= "\u9fd5") or (ch.isascii() and (ch.isalnum() or ch in "+#&._%-")) for ch in term)
