"""Per-frame features: whole-body poses (pose/ backends), face boxes and audio features."""
