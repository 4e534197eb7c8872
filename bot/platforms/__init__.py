"""Wiring of each platform adapter for the runtime: settings to adapter config, inbox, token cache.

Imports adapters/ and bot.runtime; not web or cli.
"""
