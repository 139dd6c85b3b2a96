"""Tidewater: a lakehouse ML platform on Apache Spark and Delta Lake."""

from setuptools import setup

setup(
    name="tidewater",
    version="0.1.0",
    description="Lakehouse ML platform on Apache Spark and Delta Lake",
    python_requires=">=3.11",
    packages=["lakehouse", "features", "training", "scoring", "quality"],
    # Exact versions live in constraints.txt (see STACK.md for why each one).
    install_requires=[
        "pyspark", "delta-spark", "pydantic>=2", "pyyaml", "click>=8", "numpy", "pandas", "pyarrow",
        "great-expectations", "soda-core", "soda-sparkdf", "feast[spark]", "redis",
        "mlflow", "torch", "scipy", "scikit-learn", "matplotlib",
    ],
    extras_require={
        "dev": ["pytest", "nbclient", "nbformat", "ipykernel", "matplotlib"],
    },
    entry_points={
        "console_scripts": ["tidewater = lakehouse.cli:main"],
        "tidewater.jobs": [
            "ingest_bronze = lakehouse.bronze:INGEST_BRONZE",
            "refine_silver = lakehouse.silver:REFINE_SILVER",
            "build_gold = lakehouse.gold:BUILD_GOLD",
            "compute_features = features.offline:COMPUTE_FEATURES",
            "build_training_set = features.training_set:BUILD_TRAINING_SET",
            "materialize_online = features.online:MATERIALIZE_ONLINE",
            "train = training.job:TRAIN",
            "score_batch = scoring.batch:SCORE_BATCH",
            "score_stream = scoring.stream:SCORE_STREAM",
            "detect_drift = scoring.drift_job:DETECT_DRIFT",
        ],
        "tidewater.gates": ["declared_checks = quality.gates:DeclaredChecksGate"],
        "tidewater.demo_reports": ["online_lookup = features.online:demo_report",
                                   "scoring = scoring.report:demo_report"],
        "tidewater.commands": [
            "validate = quality.cli:validate",
            "quarantine = quality.cli:quarantine",
            "features = features.cli:features",
            "mlflow-ui = training.cli:mlflow_ui",
            "models = training.cli:models",
            "stream = scoring.cli:stream",
            "drift = scoring.drift_cli:drift",
        ],
    },
)
