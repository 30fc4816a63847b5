"""Input and output: Parquet tables, media, audio, atomic outputs, pool, shards, previews."""
