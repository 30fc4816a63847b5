"""The ``mediapipe`` pose backend: MediaPipe Holistic mapped into the COCO-WholeBody 133 layout.

Holistic (legacy ``mediapipe.solutions.holistic`` of mediapipe 0.10.21, models inside the wheel)
gives 33 pose landmarks, a 468-point face mesh and two 21-point hands per frame. They become:

- body 0-16: the COCO keypoints among the 33 (:data:`BODY_FROM_MP`); score = the landmark's
  visibility clipped to [0, 1].
- feet 17-22 (left big toe, left small toe, left heel, right big toe, right small toe, right
  heel): MediaPipe's foot index (the tip of the foot) stands for the big toe and its heel for the
  heel, with their visibilities; MediaPipe has no small toe, so 18 and 21 are always missing.
- face 23-90: 68 of the mesh's 468 points, in iBUG-68 order (:data:`FACE68_FROM_MESH`); score
  ``face_score`` when Holistic found the face. The mesh has no points that match the iBUG jaw
  exactly, so the jaw (0-16) follows the mesh's face contour and is the least accurate part.
- hands 91-111 / 112-132: one to one (MediaPipe's hand order is COCO-WholeBody's: wrist, then
  thumb to little finger, base to tip); score ``hand_score`` when the hand was found.
  ``left_hand_landmarks`` is the person's own left hand (the one at pose landmark 15, the left
  wrist), which appears on the image's right in a frontal view, as COCO's "left" does.

x, y are in pixels of the clip; a frame without a person has all scores 0 (x = y = 0), and a
keypoint outside the frame is marked missing (:func:`pipeline.features.pose.drop_outside`).

Static-image mode (the default) runs the detectors on every frame. Tracking mode
(``static_image_mode=False``) is about 20-25 % faster on CPU and smoother, but its landmarks lag
and drift from the per-frame estimate (on a translated test clip its body error was 2-3 times
larger), and it assumes consecutive frames, which ``curate`` (every n-th frame) does not pass.
The graph is reset at the start of every clip (in either mode: it keeps state between calls).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import MissingInputError
from pipeline.features.pose import PoseBackend, check_frames, drop_outside
from pipeline.keypoints import FACE, LEFT_HAND, RIGHT_HAND, empty_pose

# MediaPipe pose landmark for each COCO body keypoint 0-16 (nose; left/right eye centre, ear,
# shoulder, elbow, wrist, hip, knee, ankle). MediaPipe's "left" is the person's left, as COCO's.
BODY_FROM_MP = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

# MediaPipe pose landmark for each COCO-WholeBody foot keypoint 17-22; None: no counterpart.
FEET_FROM_MP = (31, None, 29, 32, None, 30)

# Face-mesh vertex for each iBUG-68 landmark, the correspondence commonly used with MediaPipe's
# canonical 468-point mesh. "Right" is the person's right (the image's left in a frontal view).
FACE68_FROM_MESH = (
    # 0-16 jaw line, from the right temple down to the chin (8) and up to the left temple
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    # 17-21 right eyebrow, outer to inner; 22-26 left eyebrow, inner to outer
    71, 63, 105, 66, 107,
    336, 296, 334, 293, 301,
    # 27-30 nose bridge, top to tip; 31-35 lower nose, right to left
    168, 197, 5, 4,
    75, 97, 2, 326, 305,
    # 36-41 right eye: outer corner, upper lid (2), inner corner, lower lid (2)
    33, 160, 158, 133, 153, 144,
    # 42-47 left eye: inner corner, upper lid (2), outer corner, lower lid (2)
    362, 385, 387, 263, 373, 380,
    # 48-59 outer lips: right corner, upper lip to the left corner (54), lower lip back
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # 60-67 inner lips: right corner, upper, left corner (64), lower
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip

_POSE_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite",
                2: "pose_landmark_heavy.tflite"}  # fmt: skip


def _check_model_bundled(model_complexity: int) -> None:
    """Refuse a model_complexity whose pose model is not in the wheel.

    mediapipe 0.10.21 bundles only the "full" pose model (complexity 1) and downloads the others
    on first use; the pipeline never downloads at run time, so fail with a clear message instead.
    """
    if model_complexity not in _POSE_MODELS:
        raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
    import mediapipe

    path = Path(mediapipe.__file__).parent / "modules" / "pose_landmark"
    path = path / _POSE_MODELS[model_complexity]
    if not path.exists():
        raise MissingInputError(
            f"{path}: MediaPipe pose model for model_complexity={model_complexity} is not "
            f"installed (the wheel bundles only model_complexity=1; the pipeline does not "
            f"download models at run time)"
        )


def _landmarks(landmarks: Any, width: int, height: int) -> np.ndarray:
    """``(N, 3)`` float32: x, y in pixels and the landmark's visibility."""
    return np.array(
        [(lm.x * width, lm.y * height, lm.visibility) for lm in landmarks.landmark],
        dtype=np.float32,
    )


class MediaPipeHolisticBackend(PoseBackend):
    """MediaPipe Holistic as a :class:`PoseBackend` (one Holistic graph, reused across clips).

    Args:
        static_image_mode: run the detectors on every frame (True, default) or track (False).
        model_complexity: pose landmark model; only 1 is bundled with mediapipe 0.10.21.
        min_detection_confidence, min_tracking_confidence: MediaPipe's thresholds.
        hand_score, face_score: the score given to every keypoint of a found hand / face
            (Holistic reports no per-point confidence for them).
        smooth_landmarks: MediaPipe's temporal filter (tracking mode only).
    """

    name = "mediapipe"

    def __init__(
        self,
        static_image_mode: bool = True,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        hand_score: float = 0.9,
        face_score: float = 0.9,
        smooth_landmarks: bool = True,
    ) -> None:
        for label, value in (("hand_score", hand_score), ("face_score", face_score)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{label} must be in (0, 1], got {value}")
        _check_model_bundled(model_complexity)
        import mediapipe as mp  # imported here: loading mediapipe takes about a second

        self._holistic = None
        self.static_image_mode = bool(static_image_mode)
        self.hand_score = float(hand_score)
        self.face_score = float(face_score)
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=self.static_image_mode,
            model_complexity=model_complexity,
            smooth_landmarks=smooth_landmarks,
            enable_segmentation=False,
            refine_face_landmarks=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def estimate(self, frames: np.ndarray, clip: Mapping[str, Any] | None = None) -> np.ndarray:
        """Poses ``(T, 133, 3)`` float32 (x, y in pixels of ``frames``, score in [0, 1]).

        ``frames``: ``(T, H, W, 3)`` uint8 RGB, consecutive frames of one clip in tracking mode.
        ``clip`` is not used.
        """
        if self._holistic is None:
            raise RuntimeError("MediaPipeHolisticBackend is closed")
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        # A new clip: forget the previous clip's regions. Also in static-image mode, where the
        # graph still carries state between calls: without a reset a clip's landmarks depended
        # on which clips its worker had seen before (up to 9 px), so sharded and one-process
        # runs disagreed.
        self._holistic.reset()
        poses = empty_pose(len(frames))
        for t, frame in enumerate(frames):
            poses[t] = self._frame_pose(self._holistic.process(frame), width, height)
        return drop_outside(poses, width, height)

    def _frame_pose(self, result: Any, width: int, height: int) -> np.ndarray:
        """One frame's ``(133, 3)`` pose from a Holistic result."""
        pose = empty_pose(1)[0]
        if result.pose_landmarks is None:
            return pose  # no person: Holistic finds face and hands only through the pose
        body = _landmarks(result.pose_landmarks, width, height)
        body[:, 2] = np.clip(body[:, 2], 0.0, 1.0)
        pose[:17] = body[list(BODY_FROM_MP)]
        for k, mp_index in enumerate(FEET_FROM_MP):
            if mp_index is not None:
                pose[17 + k] = body[mp_index]
        if result.face_landmarks is not None:
            mesh = _landmarks(result.face_landmarks, width, height)
            pose[FACE, :2] = mesh[list(FACE68_FROM_MESH), :2]
            pose[FACE, 2] = self.face_score
        for part, hand in ((LEFT_HAND, result.left_hand_landmarks),
                           (RIGHT_HAND, result.right_hand_landmarks)):  # fmt: skip
            if hand is not None:
                pose[part, :2] = _landmarks(hand, width, height)[:, :2]
                pose[part, 2] = self.hand_score
        return pose

    def close(self) -> None:
        """Release the Holistic graph (idempotent)."""
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None
