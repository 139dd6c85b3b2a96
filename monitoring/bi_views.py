"""Views for BI tools, where the raw tables are awkward: one row per thing a dashboard shows.

- bi.drift_status: each feature's latest window per slice (its latest drift run): drifted or not, and by
  which metrics.
- bi.model_health_daily: per day, model version and deciding route: volume, alerts, alert rate,
  labels arrived so far and precision among the labelled alerts, features drifted that day.
- bi.quality_status: each table's latest quality run: checks by outcome and an overall status.
"""

from __future__ import annotations

from typing import Callable

from lakehouse.config import Config
from monitoring.drift import ALL

BI_DATABASE = "bi"

DRIFT_STATUS = """
CREATE OR REPLACE VIEW bi.drift_status AS
WITH ranked AS (
  SELECT *, dense_rank() OVER (PARTITION BY feature, slice_column, slice_value
                               ORDER BY window_start DESC, computed_at DESC) AS recency
  FROM gold.drift_metrics)
SELECT feature, coalesce(max(CASE WHEN kind <> 'dataset' THEN kind END), 'dataset') AS kind,
       slice_column, slice_value, window_start, window_end, model_version,
       max(CASE WHEN drifted THEN 1 ELSE 0 END) = 1 AS drifted,
       concat_ws(',', array_sort(collect_set(CASE WHEN drifted THEN metric END))) AS drifted_metrics,
       max(current_rows) AS current_rows, max(computed_at) AS computed_at
FROM ranked WHERE recency = 1
GROUP BY feature, slice_column, slice_value, window_start, window_end, model_version
"""

MODEL_HEALTH_DAILY = """
CREATE OR REPLACE VIEW bi.model_health_daily AS
WITH decided AS (
  SELECT txn_id, to_date(event_time) AS event_date, model_name, model_version, route, decision, 'batch' AS path
  FROM gold.predictions WHERE route IN ('champion', 'canary')
  UNION ALL
  SELECT txn_id, to_date(event_time), model_name, model_version, route, decision, 'stream'
  FROM gold.predictions_stream WHERE route IN ('champion', 'canary')),
labelled AS (
  SELECT d.*, CAST(l.is_fraud AS INT) AS is_fraud FROM decided d LEFT JOIN silver.labels l ON d.txn_id = l.txn_id),
drift AS (
  SELECT to_date(window_start) AS event_date, count(DISTINCT feature) AS drifted_features
  FROM gold.drift_metrics WHERE drifted AND slice_value = '{all_slice}' GROUP BY to_date(window_start))
SELECT l.event_date, l.path, l.model_name, l.model_version, l.route,
       count(*) AS predictions, sum(l.decision) AS alerts, avg(l.decision) AS alert_rate,
       count(l.is_fraud) AS labelled,
       sum(CASE WHEN l.decision = 1 AND l.is_fraud = 1 THEN 1 ELSE 0 END)
         / nullif(sum(CASE WHEN l.decision = 1 AND l.is_fraud IS NOT NULL THEN 1 ELSE 0 END), 0) AS precision,
       coalesce(max(drift.drifted_features), 0) AS drifted_features
FROM labelled l LEFT JOIN drift ON l.event_date = drift.event_date
GROUP BY l.event_date, l.path, l.model_name, l.model_version, l.route
"""

QUALITY_STATUS = """
CREATE OR REPLACE VIEW bi.quality_status AS
WITH last_run AS (
  SELECT `table`, max_by(run_id, checked_at) AS run_id, max(checked_at) AS checked_at
  FROM gold.quality_results GROUP BY `table`)
SELECT q.`table`, q.job, last_run.checked_at, max(q.table_version) AS table_version, count(*) AS checks,
       sum(CASE WHEN q.status = 'passed' THEN 1 ELSE 0 END) AS passed,
       sum(CASE WHEN q.status = 'warned' THEN 1 ELSE 0 END) AS warned,
       sum(CASE WHEN q.status = 'quarantined' THEN 1 ELSE 0 END) AS quarantined,
       sum(CASE WHEN q.status = 'failed' THEN 1 ELSE 0 END) AS failed,
       CASE WHEN sum(CASE WHEN q.status = 'failed' THEN 1 ELSE 0 END) > 0 THEN 'failed'
            WHEN sum(CASE WHEN q.status = 'quarantined' THEN 1 ELSE 0 END) > 0 THEN 'quarantined'
            WHEN sum(CASE WHEN q.status = 'warned' THEN 1 ELSE 0 END) > 0 THEN 'warned'
            ELSE 'passed' END AS status,
       sum(q.rows_failing) AS rows_failing
FROM gold.quality_results q JOIN last_run ON q.`table` = last_run.`table` AND q.run_id = last_run.run_id
GROUP BY q.`table`, q.job, last_run.checked_at
"""

# view -> (its SQL, the tables it reads)
VIEWS = {
    "bi.drift_status": (DRIFT_STATUS, ["gold.drift_metrics"]),
    "bi.model_health_daily": (MODEL_HEALTH_DAILY, ["gold.predictions", "gold.predictions_stream", "silver.labels",
                                                   "gold.drift_metrics"]),
    "bi.quality_status": (QUALITY_STATUS, ["gold.quality_results"]),
}


def view_statements(cfg: Config, exists: Callable[[str], bool]) -> list[str]:
    """CREATE OR REPLACE VIEW for each view whose tables are all configured and written."""
    configured = set(cfg.table_names())
    return [sql.strip().format(all_slice=ALL) for sql, tables in VIEWS.values()
            if all(t in configured and exists(t) for t in tables)]
