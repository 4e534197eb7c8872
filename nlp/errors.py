"""Errors raised on purpose by `nlp`. One root; each carries data and a Chinese message for users."""

from __future__ import annotations

from typing import Any


class NlpError(Exception):
    """Root of every error `nlp` raises on purpose.

    `user_message` is safe to show to the admin or customer who caused it (Chinese);
    `data` holds the machine-readable details (offending keyword, category, limits...).
    """

    def __init__(self, user_message: str, **data: Any) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.data = data


class RuleDataError(NlpError):
    """A stored or shipped rule set does not have the expected shape."""


class RuleChangeError(NlpError):
    """An admin rule change is invalid; the rule set was not changed at all.

    `data["code"]` names the reason: empty_keyword, keyword_too_long, keyword_no_text,
    unknown_category, unknown_keyword, category_exists, bad_category_name, last_category.
    """


class RuleCommandError(NlpError):
    """An admin chat command could not be parsed; `data["usage"]` holds the relevant usage text."""
