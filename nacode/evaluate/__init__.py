"""Evaluation: image-quality metrics and statistics."""
