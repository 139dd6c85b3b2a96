"""Distributed training, MLflow tracking and the model registry (not built yet)."""
