"""The COCO-WholeBody 133-keypoint layout shared by every pose backend.

Each frame's pose is an array of shape ``(133, 3)``: ``x`` and ``y`` in pixels of the clip and a
confidence ``score`` in ``[0, 1]``. A keypoint that was not found has score 0 (and x = y = 0).
"""

from __future__ import annotations

import numpy as np

N_KEYPOINTS = 133

BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

PARTS: dict[str, slice] = {
    "body": BODY,
    "feet": FEET,
    "face": FACE,
    "left_hand": LEFT_HAND,
    "right_hand": RIGHT_HAND,
}

# Names of the 17 body keypoints (COCO order).
BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
BODY_INDEX = {name: i for i, name in enumerate(BODY_NAMES)}

# Body keypoints that are visible in an upper-body (above-waist) framing.
UPPER_BODY = tuple(BODY_INDEX[n] for n in BODY_NAMES[:13])

# Within a hand (21 points): 0 wrist, then 4 per finger from thumb to little finger, base to tip.
HAND_WRIST = 0
HAND_FINGER_TIPS = (4, 8, 12, 16, 20)


def empty_pose(n_frames: int) -> np.ndarray:
    """All-missing poses, shape ``(n_frames, 133, 3)`` float32."""
    return np.zeros((n_frames, N_KEYPOINTS, 3), dtype=np.float32)


def validate_pose(pose: np.ndarray) -> np.ndarray:
    """Check a pose array's shape ``(T, 133, 3)`` and score range; return it as float32."""
    pose = np.asarray(pose, dtype=np.float32)
    if pose.ndim != 3 or pose.shape[1:] != (N_KEYPOINTS, 3):
        raise ValueError(f"pose must have shape (T, {N_KEYPOINTS}, 3), got {pose.shape}")
    scores = pose[..., 2]
    if np.any(~np.isfinite(pose)) or scores.min(initial=0) < 0 or scores.max(initial=0) > 1:
        raise ValueError("pose has non-finite values or scores outside [0, 1]")
    return pose
