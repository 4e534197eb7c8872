"""Platform adapters: verify, dedupe and translate platform events; render neutral cards."""
