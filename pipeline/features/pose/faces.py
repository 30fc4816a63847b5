"""Face boxes per frame from MediaPipe face detection (the detector the paper uses).

``FaceDetector.detect(frames)`` returns ``(T, 5)`` float32 rows ``[x0, y0, x1, y1, score]`` in
pixels of the frames: the highest-scoring face of each frame, clipped to the frame. A frame
without a face (or whose best face scores below ``min_score``) gets a NaN box and score 0.

The legacy ``mediapipe.solutions.face_detection`` graph of mediapipe 0.10.21 is used; both of its
models ship inside the wheel, so nothing is downloaded. ``model_selection=1`` (the full-range
model, faces up to about 5 m) is the default: on a 512 x 512 frame it still finds a face about
50 px wide that the short-range model (0, faces within about 2 m) misses, and both find the
large faces of a half-body framing, so it suits both source videos (``cut``) and clips.
"""

from __future__ import annotations

import numpy as np

from pipeline.features.pose import check_frames


class FaceDetector:
    """MediaPipe face detection, one best face per frame. Use as a context manager or close()."""

    def __init__(self, min_score: float = 0.5, model_selection: int = 1) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if model_selection not in (0, 1):
            raise ValueError(f"model_selection must be 0 (short range) or 1 (full range), "
                             f"got {model_selection}")  # fmt: skip
        import mediapipe as mp  # imported here: loading mediapipe takes about a second

        self._detector = None
        self.min_score = float(min_score)
        self.model_selection = model_selection
        # MediaPipe's own threshold is applied first; keep it low and filter with min_score here,
        # so that a score just under the threshold is reported as "no face" consistently.
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min(self.min_score, 0.5)
        )

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """Best face box per frame.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB.

        Returns:
            ``(T, 5)`` float32 ``[x0, y0, x1, y1, score]`` in pixels, the box clipped to the frame;
            NaN box and score 0 where no face scores at least ``min_score``.
        """
        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        boxes = np.full((len(frames), 5), np.nan, dtype=np.float32)
        boxes[:, 4] = 0.0
        for t, frame in enumerate(frames):
            result = self._detector.process(frame)
            best = None
            for detection in result.detections or ():
                score = float(detection.score[0])
                if score >= self.min_score and (best is None or score > best[0]):
                    best = (score, detection.location_data.relative_bounding_box)
            if best is None:
                continue
            score, box = best
            x0 = np.clip(box.xmin * width, 0, width)
            y0 = np.clip(box.ymin * height, 0, height)
            x1 = np.clip((box.xmin + box.width) * width, 0, width)
            y1 = np.clip((box.ymin + box.height) * height, 0, height)
            if x1 > x0 and y1 > y0:  # a box entirely outside the frame is no face
                boxes[t] = (x0, y0, x1, y1, min(score, 1.0))
        return boxes

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
