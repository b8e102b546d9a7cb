"""Acquisition physics: sodium signal, trajectories, NUFFT, density compensation, coils, noise."""
