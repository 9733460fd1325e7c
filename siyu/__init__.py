"""The composition root: the `siyu` command, the process table, the dev stack and the admin API
app, on top of the services and the sandbox (docs/architecture.md, "Layout")."""
