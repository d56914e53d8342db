"""The web UI: handlers.py (what each control does, no Gradio), ui.py and tabs/ (the Gradio layout, one
module per tab), server.py (flags, start-up, serving). app_gradio.py at the top level starts it."""
