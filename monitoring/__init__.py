"""The skew analysis: what the sidecar served against the offline truth.

``flush`` copies the serving log from Redis into the warehouse; ``skew`` joins it with the dbt
feature tables and measures per feature and mode (``skew_measures``), explaining mismatches by
their causes (``skew_causes``); ``skew_html`` renders the report page and ``skew_publish`` writes
the report files and its MLflow run.
"""
