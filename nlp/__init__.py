"""Fault text classification with jieba and admin-editable keyword rules.

Public API:
- `default_rules()`, `RuleSet`, `CategoryRule`: the rule model and the shipped rules;
- `FaultClassifier(rules).classify(text) -> Classification`, `build_classifier(rules)` (async, warms off-loop);
- `normalize(text)`;
- `apply_change(rules, change) -> ChangeResult`, `is_high_risk(change)` and the change dataclasses;
- `parse_rule_command(text)`, `RULE_HELP`;
- `NlpError` (root of every error raised here).
"""

from nlp.classifier import Classification, Evidence, FaultClassifier, build_classifier
from nlp.errors import NlpError, RuleChangeError, RuleCommandError, RuleDataError
from nlp.intents import NON_FAULT_INTENTS, Intent
from nlp.normalize import normalize
from nlp.rules import PRECEDENCE_RULE_ZH, CategoryRule, RuleSet, default_rules

__all__ = [
    "NON_FAULT_INTENTS",
    "PRECEDENCE_RULE_ZH",
    "CategoryRule",
    "Classification",
    "Evidence",
    "FaultClassifier",
    "Intent",
    "NlpError",
    "RuleChangeError",
    "RuleCommandError",
    "RuleDataError",
    "RuleSet",
    "build_classifier",
    "default_rules",
    "normalize",
]
