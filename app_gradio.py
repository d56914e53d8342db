"""The web UI: python app_gradio.py [--model PATH] [--data DIR] [--host 127.0.0.1] [--port 7860]

A thin Gradio layer over ldm (see app/): every tab calls the library's sampling, walk, media and explore
functions.
"""

from app.server import main
from ldm.cli import run

if __name__ == "__main__":
    run(main)
