"""Corpus sources: the built-in rendered sample corpus (and, elsewhere, PATS and local videos)."""
