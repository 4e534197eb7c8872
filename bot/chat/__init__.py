"""Chat: the conversation (an inbound message becomes a command or a reply) and one module per command family.

Imports core, storage, nlp, bot.rules and the bot base modules; not jobs, runtime, platforms, web or cli.
"""
