"""A private jieba tokenizer per rule set, sharing one loaded base dictionary.

Loading jieba's dictionary takes ~1-2 s, so it happens once per process (in whatever
thread first asks for it) and each `Segmenter` gets a copy with its own terms added. The
global `jieba` tokenizer is never touched, so rule terms cannot leak
into other code that uses jieba.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jieba

# Added terms get at least this frequency: high enough that jieba keeps them whole
# (无法启动 instead of 无法/启动), low enough not to swallow common words around them.
TERM_FREQUENCY = 20_000

_base_lock = threading.Lock()
_base: tuple[dict[str, int], int] | None = None


def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's default prefix dictionary and total frequency, loaded once per process."""
    global _base
    with _base_lock:
        if _base is None:
            # Parse jieba's dictionary text in Python instead of `initialize()`: its cache path is
            # one marshal.load that holds the GIL for up to ~0.5 s, freezing the event loop even
            # from a worker thread; this loop lets other threads run every few milliseconds.
            # The cyclic GC is paused meanwhile: the ~1M allocations would otherwise trigger full
            # collections that hold the GIL for a few hundred ms. Reference counting still runs.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                # Imported here, in the warm-up thread: `import jieba` alone costs ~0.3 s of start-up.
                import jieba

                loader = jieba.Tokenizer()
                with loader.get_dict_file() as dictionary_file:
                    _base = loader.gen_pfdict(dictionary_file)
            finally:
                if gc_was_enabled:
                    gc.enable()
        return _base


def base_dictionary_loaded() -> bool:
    """Whether the expensive dictionary load has already happened in this process."""
    return _base is not None


class Segmenter:
    """Cuts normalised text into tokens with jieba, keeping the given terms whole."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._terms = tuple(terms)
        self._tokenizer: jieba.Tokenizer | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load the dictionary and register the terms now (blocking; call it off the event loop)."""
        if self._tokenizer is not None:
            return
        with self._lock:
            if self._tokenizer is not None:
                return
            freq, total = _base_dictionary()
            import jieba

            tokenizer = jieba.Tokenizer()
            # Reuse the loaded dictionary instead of re-reading jieba's cache file (0.5-1 s), but as
            # a copy: a rule set's terms change how text is cut, so two rule sets (a dry run, another
            # runtime, the CLI) must never see each other's terms. It costs memory (one dictionary per
            # live rule set): see the README's figures.
            tokenizer.FREQ = dict(freq)
            tokenizer.total = total
            tokenizer.initialized = True
            for term in self._terms:
                if len(term) > 1 and _jieba_can_hold(term):
                    tokenizer.add_word(term, freq=max(TERM_FREQUENCY, tokenizer.FREQ.get(term, 0)))
            self._tokenizer = tokenizer

    @property
    def warmed(self) -> bool:
        return self._tokenizer is not None

    def cut(self, text: str) -> list[str]:
        """Tokens of `text` in order; their concatenation is `text`. Warms on first use."""
        if self._tokenizer is None:
            self.warm()
        assert self._tokenizer is not None
        # HMM off: every term we care about is in the dictionary, and guessing new words
        # would glue unknown characters onto keywords (and costs ~40% throughput).
        return self._tokenizer.lcut(text, HMM=False)


def _jieba_can_hold(term: str) -> bool:
    # jieba only forms words from CJK, ASCII letters/digits and +#&._%- ; other terms are
    # still matched (as joined tokens), they just cannot be dictionary words.
    return all(("\u4e00" <= ch <= "\u9fd5") or (ch.isascii() and (ch.isalnum() or ch in "+#&._%-")) for ch in term)
