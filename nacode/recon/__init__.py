"""Reconstruction and quantification: gridding, compressed sensing, TSC calibration."""
