"""Optimize generative agents from feedback: sample, score, keep, update, schedule and show, in notebooks.

Modules:

- `opto_nb.dashboard`: Live ipywidgets views of a run (buffers, sample quality, rewards, losses, event times, rollout scores, parameters), a sample explorer and a stop button; the same panels as PNG files and one static HTML report outside notebooks."""

__version__ = "0.0.1"
