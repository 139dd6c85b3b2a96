"""Batch and streaming scoring from the model registry (not built yet)."""
