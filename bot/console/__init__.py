"""The staff console (issue 22): /console/, signed in from the chat (`后台`), role- and store-scoped.

Pages are adapters like the chat: every change is a core command with the same audit
(docs/console.md).
"""
