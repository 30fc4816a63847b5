"""The evaluate stage's logic: metrics per mode, the report and its figures."""
