"""How a long video is chained from fixed-length segments (Appendix B.4.1), as a pure layout:
shared by sampling (:mod:`pipeline.inference.sampling`), the negatives, ``paha animate`` and
``evaluate``'s per-segment quality, without pulling the model code into ``evaluate``."""

from __future__ import annotations


def segment_starts(n_frames: int, window: int) -> list[int]:
    """First frame of each segment of a long video (Appendix B.4.1).

    Segments of ``window`` frames overlap by one frame (the conditioned first frame), so they
    start at ``0, window - 1, 2 (window - 1), ...`` until ``n_frames`` are covered. The frames
    generated are ``starts[-1] + window >= n_frames``.
    """
    if window < 2:
        raise ValueError(f"a segment needs at least 2 frames, got {window}")
    if n_frames < 1:
        raise ValueError(f"a video needs at least 1 frame, got {n_frames}")
    starts = [0]
    while starts[-1] + window < n_frames:
        starts.append(starts[-1] + window - 1)
    return starts
