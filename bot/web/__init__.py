"""The aiohttp application: /healthz, the JSON API (/api/), the chat playground and its static page.

Imports bot.runtime and below; not platforms or cli.
"""
