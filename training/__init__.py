"""Training the fraud model: Petastorm feeds Horovod (or TorchDistributor) workers; MLflow tracks and registers.

The job runs in the training environment (.venv-train); the model reaches scoring only through
the MLflow registry.
"""
