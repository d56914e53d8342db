"""The Train tab's outputs as Gradio sends them to the page."""

from __future__ import annotations

import gradio as gr

from app.handlers.train import TeachStatus
from app.tabs.train import shown


def test_the_loss_plot_gets_no_frame_before_its_first_point_then_number_axes():
    # the page keeps the axes and margins of the first frame it draws: an empty one has category axes, no labels
    plot = gr.LinePlot(x="step", y="loss")
    assert plot.postprocess(shown(TeachStatus("a line"))[1]) is None
    losses = [(10, 0.8547), (20, 0.6449)]
    sent = plot.postprocess(shown(TeachStatus("a line", losses=losses))[1])
    assert sent.datatypes == {"step": "quantitative", "loss": "quantitative"}
    assert sent.data == [list(point) for point in losses]
