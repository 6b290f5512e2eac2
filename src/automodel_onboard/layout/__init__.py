"""Laying a spec out per kind: the shared machinery, the checkpoint table, and one module per kind."""
