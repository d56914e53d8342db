"""One module per tab of the web UI: each lays out its controls and wires them to its handlers, the module of
the same name in app/handlers/ (app/tabs/generate.py to app/handlers/generate.py)."""
