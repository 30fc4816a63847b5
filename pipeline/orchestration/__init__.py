"""Running the DVC DAG: reading dvc.yaml and the Prefect flows."""
