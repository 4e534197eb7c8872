"""Composition root: settings, aiohttp app, CLI, worker, conversation flows."""
