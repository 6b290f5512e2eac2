"""The commands: the CLI, `new`, `update` and `render-all`."""
