"""The web UI: handlers/ (what each control does, no Gradio: one module per tab and the plumbing they share),
ui.py and tabs/ (the Gradio layout, one module per tab, each beside its handlers' module of the same name),
server.py (flags, start-up, serving). app_gradio.py at the top level starts it."""
