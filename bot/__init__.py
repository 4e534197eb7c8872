"""Composition root: settings, the runtime that wires storage, core, chat and adapters, the worker.

Subpackages, lowest first: rules < chat < jobs < (runtime) < platforms, web, (worker) < cli; the base
modules (settings, service_config, token_cache, photo_store, demo, audit_key) import no subpackage.
"""
