#!/usr/bin/env bash
# Spark on Kubernetes: a job from the platform image, driver and executors in pods. Storage must be
# shared by every pod (storage.root / table_paths on an object store or a volume mounted at the root).
#   K8S_API=https://kubernetes.default.svc NAMESPACE=tidewater deploy/k8s/spark-submit.sh ingest_bronze
set -euo pipefail
JOB=${1:?usage: spark-submit.sh JOB [job options]}
shift
exec spark-submit \
  --master "k8s://${K8S_API:?set K8S_API}" --deploy-mode cluster --name "tidewater-${JOB//_/-}" \
  --conf spark.kubernetes.namespace="${NAMESPACE:-tidewater}" \
  --conf spark.kubernetes.container.image="${IMAGE:-tidewater:0.1.0}" \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=tidewater-spark \
  --conf spark.kubernetes.driver.secretKeyRef.TIDEWATER_PII_KEY=tidewater-secrets:pii-key \
  --conf spark.kubernetes.executor.secretKeyRef.TIDEWATER_PII_KEY=tidewater-secrets:pii-key \
  --conf spark.executor.instances="${EXECUTORS:-2}" \
  "local:///opt/tidewater/jobs/${JOB}.py" --env cluster "$@"
