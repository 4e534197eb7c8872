"""Domain core of ticketbot: the shared kernel at this level, one subpackage per capability.

Kernel (model, commands, cards, errors, ports, clock, repository, service, settings, workflow, timers,
transitions, replies) imports no capability; capabilities import the kernel and the ones below them
(audit < intake < lifecycle < dispatch < sla < reports). Nothing here imports a platform, SQL or HTTP
package, nor bot/, storage/, adapters/ or nlp/ (tests/test_import_layers.py checks all of this).
"""
