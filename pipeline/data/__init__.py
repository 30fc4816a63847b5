"""Records built from the tables: clip records and training windows, face boxes and region masks."""
