"""What each control of the web UI does, as plain Python: one module per tab, and the plumbing they share.

A tab's handlers are a class in the module named after the tab (`GenerateHandlers` in `generate.py` for
app/tabs/generate.py; `animate.py` serves both animation tabs, walk.py and morph.py; a Train tab's go in
`train.py`), built over the one `Shared` (shared.py: the models, the dataset view, request
folders, the model's thread, the Stop flags). The plumbing has its own modules: `models.py` (which loaded
model a request names), `folders.py` (a folder per request, old ones pruned, images written), `checks.py` (a
server's limits on raw values), `live.py` (one image as a control moves), `payloads.py` (the one place that
knows Gradio's data shapes), `handoffs.py` (what one tab hands another).

Nothing here imports Gradio: a handler raises LdmError with one line for the user, takes progress as a plain
(done, total) callable, and returns paths and text, so it can be tested without a server (app/events.py turns
handlers into Gradio events).
"""
