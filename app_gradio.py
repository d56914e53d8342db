"""The web UI: python app_gradio.py [--model PATH] [--data DIR] [--host 127.0.0.1] [--port 7860]

A thin Gradio layer over ldm (see app/): every tab calls the library's sampling, walk, media and explore
functions.
"""

import os

# Before torch loads (OpenMP reads it once): the server's model thread shares the cores with Gradio's own threads,
# and OpenMP's spinning waits then stall it (a student image on 2 busy cores: 2-6 s spinning, 0.4-0.75 s passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from app.server import main  # noqa: E402 (after the OpenMP setting)
from ldm.cli import run  # noqa: E402

if __name__ == "__main__":
    run(main)
