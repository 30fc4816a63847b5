"""Parquet tables: empty tables of every schema write and read back with their types."""

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.io import tables

SCHEMAS = {name: getattr(tables, name) for name in
           ("RAW", "RAW_POSE", "CLIPS", "CURATED", "POSE", "FACES", "EXTRACT", "PAIRS",
            "GENERATED")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_an_empty_table_round_trips(name, tmp_path):
    schema = SCHEMAS[name]
    # What a stage builds when nothing qualifies: float64/object columns that Arrow cannot turn
    # into list columns (annotations.parquet of every source but the sample one).
    empty = pd.DataFrame({column: [] for column in schema.names})
    tables.write_table(empty, tmp_path / "t.parquet", schema)
    back = tables.read_table(tmp_path / "t.parquet", schema)
    assert back.empty and list(back.columns) == schema.names
    assert pa.Table.from_pandas(back, preserve_index=False).cast(schema).schema.equals(schema)


def test_missing_columns_are_named():
    with pytest.raises(tables.TableError, match=r"missing columns \['frame', 'keypoints'\]"):
        tables.to_arrow(pd.DataFrame({"video_id": []}), tables.RAW_POSE)
