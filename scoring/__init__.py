"""Scoring: batch and streaming scoring with the model an alias names in the MLflow registry.

Models arrive only through the registry contract (registry/); nothing here imports training.
Drift and live performance, which read what scoring writes, are in monitoring/.
"""
