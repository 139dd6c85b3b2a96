"""Tidewater: a lakehouse ML platform on Apache Spark and Delta Lake."""

from setuptools import setup

setup(
    name="tidewater",
    version="0.1.0",
    description="Lakehouse ML platform on Apache Spark and Delta Lake",
    python_requires=">=3.11",
    packages=["lakehouse", "registry", "features", "training", "scoring", "monitoring", "quality", "services",
              "governance"],
    # Exact versions live in constraints.txt (the Makefile says why the key ones are pinned).
    install_requires=[
        "pyspark", "delta-spark", "pydantic>=2", "pyyaml", "click>=8", "numpy", "pandas", "pyarrow",
        "great-expectations", "soda-core", "soda-sparkdf", "feast[spark]", "redis",
        "mlflow", "torch", "scipy", "scikit-learn", "matplotlib", "deltalake", "rich", "psutil",
        "pyhive[hive_pure_sasl]", "apscheduler", "fastapi", "uvicorn", "prometheus-client", "confluent-kafka",
        "presidio-analyzer",
        "fairlearn", "cyclonedx-python-lib[json-validation]",
    ],
    extras_require={
        "dev": ["pytest", "nbclient", "nbformat", "ipykernel", "matplotlib", "duckdb", "py-spy"],
    },
    entry_points={
        "console_scripts": ["tidewater = lakehouse.cli:main"],
        "tidewater.jobs": [
            "ingest_bronze = lakehouse.bronze:ingest_bronze",
            "refine_silver = lakehouse.silver:refine_silver",
            "build_gold = lakehouse.gold:build_gold",
            "quarantine_replay = quality.replay:replay_quarantine",
            "compute_features = features.offline:compute_features",
            "build_training_set = features.training_set:build_training_set",
            "materialize_online = features.online:materialize_online",
            "stream_online = features.online_stream:stream_online",
            "train = training.job:train",
            "validate_model = training.validation:validate_model",
            "score_batch = scoring.batch:score_batch",
            "score_stream = scoring.stream:score_stream",
            "record_decisions = scoring.online_decisions:record_decisions",
            "detect_drift = monitoring.drift_job:detect_drift",
            "review_deployment = monitoring.deployment_review:review_deployment",
            "continuous_training = training.continuous:continuous_training",
        ],
        "sqlalchemy.dialects": ["sparksql = services.bi_dialect:SparkSqlDialect"],
        "tidewater.gates": ["declared_checks = quality.gates:DeclaredChecksGate"],
        "tidewater.demo_reports": ["online_lookup = features.online:demo_report",
                                   "scoring = scoring.report:demo_report",
                                   "drift = monitoring.report:demo_report",
                                   "operating_loop = training.report:demo_report"],
        "tidewater.commands": [
            "validate = quality.cli:validate",
            "quarantine = quality.cli:quarantine",
            "features = features.cli:features",
            "mlflow-ui = training.cli:mlflow_ui",
            "models = training.cli:models",
            "stream = scoring.cli:stream",
            "drift = monitoring.cli:drift",
            "services = services.cli:services",
            "erase = governance.cli:erase",
            "retention = governance.cli:retention",
            "pii = governance.cli:pii",
        ],
    },
)
