"""Scoring and monitoring: batch and streaming scoring from the MLflow registry, drift as a table job.

Models arrive only through the registry (an alias such as `champion`); nothing here imports training.
"""
