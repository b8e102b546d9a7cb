"""Denoisers: networks, losses, training, and classical baselines."""
