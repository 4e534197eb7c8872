"""Background work of a process: inbox processing, outbox delivery, the timer engines (in-process, arq).

Imports storage, core and the bot base modules; not chat, runtime, platforms, web or cli.
"""
