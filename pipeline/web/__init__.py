"""The browser pages: ``paha demo`` (one video from a photo and speech) and ``paha review``
(keep / reject curated clips into ``data/overrides.csv``)."""
