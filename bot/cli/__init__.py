"""The `ticketbot` command line: one module per command family; the JSON outputs are contracts.

Top of bot: may import everything; nothing imports it.
"""
