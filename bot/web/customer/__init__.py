"""Customer pages (issue 21): /r/{store_code} report, /t/{token} tracking, /t/{token}/sign sign-off.

No login: the store page is public (rate-limited), the tracking and sign-off pages are reached by
an unguessable, revocable capability token. Every change goes through the same core commands as
the chat (docs/customer-pages.md).
"""
