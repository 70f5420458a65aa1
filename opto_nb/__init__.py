"""Optimize generative agents from feedback: sample, score, keep, update, schedule and show, in notebooks."""

__version__ = "0.0.1"
