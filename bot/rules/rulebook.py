"""The live classifier: rules from the database (or the shipped defaults), rebuilt off the
event loop, refreshed in every process when an admin changes them.

Versions: the stored rule versions are `config_versions` rows of kind "rules" (1, 2, ...);
version 0 is the shipped default rule set. A stored payload is `RuleSet.to_dict()` whose
`version` equals its row's version.

Start-up never waits for jieba: constructing a classifier takes milliseconds, its dictionary
loads in a worker thread (`warm`, spawned at start). Until then `ready()` is the thing to
await before classifying — the conversation does — so an early message waits for the
warm-up instead of loading the dictionary on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from core.repository import UnitOfWork
from nlp.classifier import Classification, FaultClassifier
from nlp.rules import RuleSet, default_rules
from nlp.segmenter import base_dictionary_loaded

log = logging.getLogger(__name__)
RULES_KIND = "rules"
DEFAULT_VERSION = 0


def shipped_rules() -> RuleSet:
    """The default rule set, numbered as version 0."""
    return replace(default_rules(), version=DEFAULT_VERSION)


def rules_from_payload(version: int, payload: dict[str, Any]) -> RuleSet:
    """A stored payload as a rule set numbered like its row (whatever version the payload says)."""
    return replace(RuleSet.from_dict(payload), version=version)


async def stored_rules(uow: UnitOfWork) -> RuleSet:
    """The rules the service uses: the newest stored version, else the shipped defaults (v0)."""
    latest = await uow.latest_config(RULES_KIND)
    return shipped_rules() if latest is None else rules_from_payload(*latest)


class RuleBook:
    """Implements core.classification.FaultClassifierPort by delegating to the current classifier."""

    RULES_KIND = RULES_KIND

    def __init__(self) -> None:
        self.rules = shipped_rules()
        self._classifier = FaultClassifier(self.rules)
        self._swap_lock = asyncio.Lock()
        self._warming: asyncio.Future[Any] | None = None
        self._warming_for: FaultClassifier | None = None
        # The last answer: the conversation classifies a text to route it, then report_fault
        # classifies the same text again (~50 us each). Valid for that classifier only.
        self._last: tuple[FaultClassifier, str, Classification] | None = None

    @property
    def version(self) -> int:
        return self.rules.version

    @property
    def classifier(self) -> FaultClassifier:
        return self._classifier

    @property
    def warmed(self) -> bool:
        return self._classifier.warmed

    def classify(self, text: str) -> Any:
        # An nlp Classification; typed Any for core's FaultAnalysis protocol, whose attributes are
        # declared settable while a Classification is frozen.
        classifier, last = self._classifier, self._last
        if last is not None and last[0] is classifier and last[1] == text:
            return last[2]
        result: Classification = classifier.classify(text)
        self._last = (classifier, text, result)
        return result

    async def ready(self) -> None:
        """Wait (without blocking the loop) until the current classifier's dictionary is loaded."""
        while not self._classifier.warmed:
            classifier = self._classifier
            if self._warming is None or self._warming_for is not classifier:
                self._warming_for = classifier
                self._warming = asyncio.ensure_future(asyncio.to_thread(classifier.warm))
            # Shielded: a cancelled waiter (a message handler) must not cancel the shared warm-up.
            await asyncio.shield(self._warming)

    async def warm(self) -> None:
        """Spawned at start-up: load jieba's dictionary in a worker thread."""
        await self.ready()

    async def install(self, version: int, payload: dict[str, Any]) -> None:
        """Use these rules from now on (an admin change, a rollback, another process's change)."""
        rules = rules_from_payload(version, payload)
        async with self._swap_lock:
            if version < self.version:
                return  # a refresh already installed a newer version (versions only grow)
            await self._swap(rules)

    async def refresh(self, uow: UnitOfWork) -> bool:
        """Install the newest stored rules if they changed. True when something changed."""
        async with self._swap_lock:
            # Read under the lock: a refresh that read an older version must not overwrite a newer install.
            latest = await uow.latest_config(RULES_KIND)
            # End the read transaction before building: on SQLite it holds the database's write lock.
            await uow.commit()
            if latest is None or latest[0] == self.version:
                return False
            await self._swap(rules_from_payload(*latest))
        log.info("classifier rules now at version %s", latest[0])
        return True

    async def _swap(self, rules: RuleSet) -> None:
        # Before the dictionary is loaded (start-up) a cold classifier is swapped in at once and the
        # warm-up task warms it; afterwards the new one is warmed first (~0.1 s) so classify never waits.
        warm_first = base_dictionary_loaded()

        def build() -> FaultClassifier:
            classifier = FaultClassifier(rules)
            return classifier.warm() if warm_first else classifier

        self._classifier = await asyncio.to_thread(build)
        self.rules = rules
