"""One module per tab of the web UI: each lays out its controls and wires them to app.handlers."""
