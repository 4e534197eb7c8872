"""Classification rules in the running service: the live rulebook, admin changes, dry runs.

Imports nlp, core, storage and the bot base modules; not chat, jobs, runtime, platforms, web or cli.
"""
