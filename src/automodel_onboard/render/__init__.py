"""Rendering: the Copier glue (filters over the spec, the kinds and the destination) and the staged Copier run."""
