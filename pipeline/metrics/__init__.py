"""Evaluation metrics, one module per metric with its protocol in the docstring."""
