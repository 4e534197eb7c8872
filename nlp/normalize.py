"""Text normalisation shared by the classifier, the rule editor and the command parser.

Steps, in order: NFKC (full-width letters, digits, punctuation and the ideographic space
become their half-width forms), zero-width characters dropped, traditional → simplified
characters, latin case folding, whitespace runs collapsed to one space.

Device and fault codes (OBD, ECU, U0100, P0300, E1) survive whole: none of the steps
splits or joins letters and digits, they only change their width and case.
"""

from __future__ import annotations

import re
import unicodedata

from nlp.traditional import TRADITIONAL_TO_SIMPLIFIED

_TO_SIMPLIFIED = str.maketrans(TRADITIONAL_TO_SIMPLIFIED)
# Zero-width space/joiners and BOM arrive with copy-pasted text and would split words.
_ZERO_WIDTH = str.maketrans("", "", "\u200b\u200c\u200d\u2060\ufeff")
_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Return the canonical form of `text` used for all matching (lower-case, simplified, half-width)."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).translate(_TO_SIMPLIFIED)
    return _WHITESPACE.sub(" ", text.casefold()).strip()


def display_form(text: str) -> str:
    """Normalise `text` for storing as a rule keyword or category name: like `normalize`, but case kept."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).translate(_TO_SIMPLIFIED)
    return _WHITESPACE.sub(" ", text).strip()
