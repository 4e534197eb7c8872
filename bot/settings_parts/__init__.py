"""Groups of settings, one module per capability, mixed into `bot.settings.Settings`.

Each group is a pydantic-settings class without a config of its own: `Settings` inherits them all
(one settings object, rule 4 of the design), and each capability keeps its keys next to each other.
"""
