# Two commands on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   - set everything up, then run the end-to-end demo
#   make test   - set everything up, then run the test suite
# Set-up is idempotent: each step reruns only when its inputs changed.

PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.tidewater-installed
JARS_STAMP := jars/.fetched
UDF_JAR := jars/tidewater-spark.jar
CLASS_ARCHIVE := jars/driver.jsa
SPARK_DEFAULTS_STAMP := $(VENV)/.spark-defaults
TRAIN_VENV := .venv-train
TRAIN_STAMP := $(TRAIN_VENV)/.tidewater-installed
HOROVOD_STAMP := $(TRAIN_VENV)/.horovod-built
TRAIN_DEFAULTS_STAMP := $(TRAIN_VENV)/.spark-defaults
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.tidewater-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup train-env airflow-env demo test jars servers clean-data pack-train-env

setup: $(STAMP) $(JARS_STAMP) $(UDF_JAR) $(CLASS_ARCHIVE) $(SPARK_DEFAULTS_STAMP) servers train-env airflow-env

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Exact versions come from constraints.txt: pyspark pinned exactly (GE caps it below 4.2), delta-spark 4.4.0
# to match the Delta jar on Maven Central, mlflow 3.17.2, feast 0.67 (pandas < 3, numpy >= 2).
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set, every import would compile pandas & co.
# from source again (about 1 s per command and per Spark worker).
$(STAMP): setup.py constraints.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python -c constraints.txt -e '.[dev]'
	touch $@

# Delta's and the Kafka source's JVM jars for Spark 4.1, fetched with Maven into ./jars (spark.jars
# points there), and the Kafka broker with its own class path into ./jars/kafka.
$(JARS_STAMP): pom.xml deploy/kafka/pom.xml
	rm -f jars/*.jar  # a version changed in pom.xml must not leave its old jar beside the new one
	mvn -q -B dependency:copy-dependencies
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies
	touch $@

jars: $(JARS_STAMP) $(UDF_JAR)

# Tidewater's own Spark functions (jvm/: the PII hash keyed from the JVM's environment), compiled
# against the installed pyspark's jars: no build tool, no download.
$(UDF_JAR): $(wildcard jvm/src/dev/tidewater/spark/*.java) $(STAMP) $(JARS_STAMP)
	rm -rf target/udf && mkdir -p target/udf
	javac --release 17 -d target/udf $(wildcard jvm/src/dev/tidewater/spark/*.java) \
	  -cp "$$($(VENV)/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars/*"
	jar cf $@ -C target/udf .

# The driver JVM's class archive: a small bronze -> silver -> gold run writes every class it loaded,
# which each later driver maps instead of loading from the jars (about 2 s of every job's start).
# Written again whenever a jar or pyspark changes (the JVM ignores an archive of other jars).
$(CLASS_ARCHIVE): $(UDF_JAR) $(JARS_STAMP) $(STAMP)
	$(VENV)/bin/python -m lakehouse.class_archive

# The real Redis server (Debian package) for the Redis online store and its tests, and Debian's
# PostgreSQL server for the shared metastore (`tidewater services start metastore`).
servers:
	@{ command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q redis-server postgresql; }

# spark-submit reads spark-defaults.conf at JVM start: it carries the Delta jars and settings.
$(SPARK_DEFAULTS_STAMP): $(STAMP) $(JARS_STAMP) $(UDF_JAR) lakehouse/session.py
	$(VENV)/bin/python -m lakehouse.session
	touch $@

# The training environment: torch + Horovod + Petastorm need NumPy 1 and pyarrow < 15, which cannot
# live beside Feast, so `train` runs with this Python (spark-submit driver and executors alike).
$(TRAIN_VENV)/bin/python:
	$(PYTHON) -m venv $(TRAIN_VENV)

$(TRAIN_STAMP): requirements-train.txt constraints-train.txt setup.py | $(TRAIN_VENV)/bin/python
	$(TRAIN_VENV)/bin/pip install -q uv==$(UV_VERSION)
	$(TRAIN_VENV)/bin/uv pip install -q --compile-bytecode --python $(TRAIN_VENV)/bin/python -c constraints-train.txt -r requirements-train.txt
	$(TRAIN_VENV)/bin/uv pip install -q --python $(TRAIN_VENV)/bin/python --no-deps petastorm==0.13.1 -e .
	touch $@

# Built from source against the installed torch (about 2-3 minutes on 2 cores).
$(HOROVOD_STAMP): $(TRAIN_STAMP) scripts/build_horovod.sh
	bash scripts/build_horovod.sh $(TRAIN_VENV)
	touch $@

$(TRAIN_DEFAULTS_STAMP): $(TRAIN_STAMP) $(JARS_STAMP) $(UDF_JAR) lakehouse/session.py
	$(TRAIN_VENV)/bin/python -m lakehouse.session
	touch $@

train-env: $(HOROVOD_STAMP) $(TRAIN_DEFAULTS_STAMP)

# Apache Airflow in an environment of its own (its pins cannot live beside ours): the tests load the DAG
# that `tidewater services airflow-dag` generates with Airflow's own DagBag. Exact versions: constraints-airflow.txt.
$(AIRFLOW_VENV)/bin/python:
	$(PYTHON) -m venv $(AIRFLOW_VENV)

$(AIRFLOW_STAMP): requirements-airflow.txt constraints-airflow.txt | $(AIRFLOW_VENV)/bin/python
	$(AIRFLOW_VENV)/bin/pip install -q uv==$(UV_VERSION)
	$(AIRFLOW_VENV)/bin/uv pip install -q --compile-bytecode --python $(AIRFLOW_VENV)/bin/python -c constraints-airflow.txt -r requirements-airflow.txt
	touch $@

airflow-env: $(AIRFLOW_STAMP)

# For a cluster: one archive to pass as `--archives tidewater-train.tar.gz#env`
# with spark.pyspark.python=./env/bin/python (see README, "Training on a cluster").
pack-train-env: train-env
	$(TRAIN_VENV)/bin/venv-pack -p $(TRAIN_VENV) -o tidewater-train.tar.gz --force \
	  --exclude '*__editable__*tidewater*' --exclude '*tidewater-0.1.0.dist-info*'
	mkdir -p dist && rm -f dist/tidewater.zip && zip -qr dist/tidewater.zip lakehouse registry features training scoring monitoring quality -x '*__pycache__*'
	@echo "ship with: --archives tidewater-train.tar.gz#env --py-files dist/tidewater.zip"

demo: setup
	$(VENV)/bin/tidewater demo $(DEMO_ARGS)

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-data:
	rm -rf var/
