"""Geometry of the sample corpus's cartoon news anchors: the figure and its ground truth.

A :class:`Character` fixes how a speaker looks (colours, hair, proportions). Per frame, the
motion model hands over a :class:`Controls` (head pose, mouth, eyelids, wrists, hands); from it
:func:`figure` builds a :class:`Figure`: the outlines of every drawn part *and* the 133
COCO-WholeBody keypoints taken from those same outlines, so ground truth and pixels can never
disagree. :mod:`pipeline.corpus.sample.drawing` paints a figure into an RGB frame.

Conventions: all geometry is in pixels of a ``size x size`` frame, ``x`` right, ``y`` down.
"Right"/"left" are the *person's*: the right arm appears on the image's left side (camera-facing
person), as in COCO. Colours are RGB tuples of floats in 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline import keypoints as kp

RGB = tuple[float, float, float]

SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 px so motion is smooth
ONE = 1 << SHIFT


@dataclass(frozen=True)
class Character:
    """How one speaker looks. Lengths are fractions of the frame side."""

    skin: RGB
    jacket: RGB
    shirt: RGB
    hair: RGB
    lips: RGB
    iris: RGB
    bg_top: RGB
    bg_bottom: RGB
    hair_style: str = "short"  # short | side | long | bun
    tie: RGB | None = None
    face_w: float = 0.125  # half-width of the face oval
    face_h: float = 0.165  # half-height of the face oval
    head_y: float = 0.30  # centre of the face oval at rest
    neck_w: float = 0.065  # half-width of the neck
    shoulder_x: float = 0.25  # shoulder joint distance from the vertical midline
    shoulder_y: float = 0.61
    deltoid_out: float = 0.045  # the rounded shoulder's centre, outside the joint
    waist: float = 0.27  # half-width of the torso at the frame's bottom edge
    upper_arm: float = 0.33
    forearm: float = 0.25  # longest forearm seen from the front (it foreshortens)
    arm_w: float = 0.105  # sleeve thickness at the shoulder ...
    elbow_w: float = 0.072  # ... and at the elbow (limbs taper, as real ones do)
    forearm_w: float = 0.062  # bare forearm thickness below the elbow ...
    wrist_w: float = 0.042  # ... and at the wrist, narrower than the palm
    palm: float = 0.085  # palm length (wrist to middle-finger knuckle)

    def finger_width(self, size: int) -> float:
        """Drawn finger thickness in pixels of a ``size`` frame."""
        return 0.23 * self.palm * size


@dataclass
class Controls:
    """One frame's pose. Offsets are fractions of the frame side; angles in radians.

    ``wrist_r``/``wrist_l`` are absolute wrist targets (fractions of the side); the elbow
    follows (:func:`_place_arm`) and a target out of reach is pulled in, so the drawn wrist is
    the keypoint. ``hand_angle`` tilts the hand from fingers-up, positive away from the midline.
    """

    head_dx: float = 0.0
    head_dy: float = 0.0
    head_roll: float = 0.0
    head_yaw: float = 0.0  # -1..1, shifts the features inside the face oval
    mouth_open: float = 0.0  # 0..1
    mouth_wide: float = 0.0  # -1 (rounded) .. 1 (spread)
    eye_open: float = 1.0  # 0 (closed) .. 1
    brow: float = 0.0  # 0..1 raise
    gaze_x: float = 0.0  # -1..1
    gaze_y: float = 0.0
    body_dx: float = 0.0
    body_dy: float = 0.0
    shrug: float = 0.0  # shoulder lift, fraction of the side
    wrist_r: tuple[float, float] = (0.34, 0.80)
    wrist_l: tuple[float, float] = (0.66, 0.80)
    hand_angle_r: float = 0.1
    hand_angle_l: float = 0.1
    spread_r: float = 1.0
    spread_l: float = 1.0
    curl_r: float = 0.0
    curl_l: float = 0.0


@dataclass
class Figure:
    """Everything :func:`draw` needs for one frame, plus the ground-truth keypoints.

    ``keypoints``: ``(133, 2)`` float64 pixel positions (scores are decided by the motion
    model). Shapes are ``(n, 2)`` pixel polygons or polylines.
    """

    keypoints: np.ndarray
    head_outline: np.ndarray  # (n, 2) closed polygon of the face skin
    neck: np.ndarray
    torso: np.ndarray
    collar: np.ndarray
    tie: np.ndarray | None
    lapels: list[np.ndarray]
    arms: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # side -> shoulder, bend, wrist
    palms: dict[str, np.ndarray]  # side -> palm polygon
    eyes: list[dict[str, np.ndarray]]
    brows: list[np.ndarray]
    nose: np.ndarray
    nostrils: list[np.ndarray]
    lips_outer: np.ndarray
    lips_inner: np.ndarray
    mouth_open: float
    ears: list[np.ndarray]
    hair_back: np.ndarray | None
    hair_front: list[np.ndarray] = field(default_factory=list)
    front_hand: str = "right"
    under_hair: np.ndarray | None = None  # (133,) bool: face/ear points the hair covers


# ------------------------------------------------------------------ small geometry helpers
def points_in_polygon(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which ``points`` ``(N, 2)`` lie inside ``polygon`` ``(M, 2)``: boolean ``(N,)``."""
    polygon = np.asarray(polygon, np.float32)
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    # Only points in the polygon's bounding box need the exact (per-point) test.
    inside = np.all((points >= lo) & (points <= hi), axis=1)
    for k in np.flatnonzero(inside):
        x, y = points[k]
        inside[k] = cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0
    return inside


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _ellipse(center, rx: float, ry: float, angle: float = 0.0, n: int = 24) -> np.ndarray:
    """Polygon ``(n, 2)`` approximating a rotated ellipse."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1) @ _rot(angle).T
    return pts + np.asarray(center, dtype=float)


def _arc(p0, p1, bulge: float, n: int = 8) -> np.ndarray:
    """Points ``(n, 2)`` from ``p0`` to ``p1`` on a parabola bulging ``bulge`` px to the left."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    t = np.linspace(0, 1, n)[:, None]
    d = p1 - p0
    normal = np.array([d[1], -d[0]]) / (np.linalg.norm(d) + 1e-9)
    return p0 + t * d + (4 * t * (1 - t)) * bulge * normal


def _limb(p0, p1, r0: float, r1: float, n: int = 10) -> np.ndarray:
    """Polygon of a tapered capsule from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    d = d / (np.linalg.norm(d) + 1e-9)
    normal = np.array([-d[1], d[0]])
    a = np.linspace(-np.pi / 2, np.pi / 2, n)[:, None]
    cap1 = p1 + r1 * (np.cos(a) * d + np.sin(a) * normal)  # around the far end
    cap0 = p0 + r0 * (-np.cos(a) * d - np.sin(a) * normal)  # around the near end
    return np.concatenate([cap1, cap0])


def _place_arm(shoulder, wrist, l1: float, l2: float, outward: float, size: float):
    """Elbow and (reachable) wrist of an arm seen from the front: ``(elbow, wrist)``.

    The upper arm hangs from the shoulder, swinging out as the wrist moves out; the forearm is
    whatever links the elbow to the wrist (shorter than ``l2`` when it points at the camera, as
    a forearm held in front of the chest does). A wrist out of reach is pulled in to ``l2``.
    ``outward`` is -1 for the arm on the image's left, +1 for the other.
    """
    shoulder, wrist = np.asarray(shoulder, float), np.asarray(wrist, float)
    out = outward * (wrist[0] - shoulder[0]) / size  # how far the wrist is outside the shoulder
    rise = (shoulder[1] - wrist[1]) / size  # how high the wrist is above the shoulder
    angle = 0.3 + 0.9 * out + 0.5 * max(rise + 0.1, 0.0)
    # A raised wrist swings the upper arm forward: its projection shortens.
    length = l1 * (1.0 - 0.5 * float(np.clip(rise + 0.15, 0.0, 0.6)))
    elbow = shoulder + length * np.array([outward * np.sin(angle), np.cos(angle)])
    d_vec = wrist - elbow
    d = float(np.linalg.norm(d_vec))
    if d > l2:
        wrist = elbow + d_vec * (l2 / d)
    return elbow, wrist


# ------------------------------------------------------------------ face geometry
# Face layout in face units: u across (-1 image left .. 1 image right), v down (-1 top .. 1 chin).
_EYE_U, _EYE_V, _EYE_HALF_W, _EYE_H = 0.42, -0.04, 0.21, 0.085
_BROW_V = -0.27
_MOUTH_V, _MOUTH_HALF_W = 0.58, 0.30
# How far the lips part and the chin drops at full opening (face units). Wide enough that speech
# shows at the sample profile's 64 px: the inner-lip gap reaches about 3 px there (0.24 / 0.13
# gave 1.5 px, a quarter of one latent cell, and UniVDM never learnt it).
_LIP_GAP, _JAW_DROP = 0.46, 0.24


def _face_outline_point(theta: np.ndarray, jaw_drop: float) -> np.ndarray:
    """Face-unit points of the oval at angles ``theta`` (y down: pi/2 is the chin)."""
    s = np.sin(theta)
    lower = np.clip(s, 0, None)
    u = np.cos(theta) * (1 - 0.2 * lower**2)  # the jaw narrows towards the chin
    v = s * (1 + jaw_drop * lower**3)  # opening the mouth drops the chin
    return np.stack([u, v], axis=-1)


def _face_landmarks(c: Controls) -> tuple[np.ndarray, dict]:
    """The 68 face landmarks in face units (iBUG order) and the dense shapes they sit on."""
    yaw = 0.13 * c.head_yaw  # features slide across the oval when the head turns
    o = float(np.clip(c.mouth_open, 0, 1))
    pts = np.zeros((68, 2))
    # Jaw 0-16: from the image-left temple (ear height) around the chin to the image right.
    theta = np.pi + 0.12 - np.arange(17) * (np.pi + 0.24) / 16
    pts[0:17] = _face_outline_point(theta, _JAW_DROP * o)
    # Brows 17-21 (image left), 22-26 (image right): arcs, raised by c.brow.
    bv = _BROW_V - 0.06 * c.brow
    for start, sign in ((17, -1), (22, 1)):
        us = np.linspace(0.70, 0.16, 5) if sign < 0 else np.linspace(0.16, 0.70, 5)
        arch = 0.07 * np.sin(np.linspace(0.3, np.pi - 0.3, 5)) ** 0.5
        pts[start : start + 5] = np.stack([sign * us + yaw, bv - arch + 0.03], axis=1)
    # Nose: bridge 27-30 down to the tip, base 31-35.
    pts[27:31] = np.stack(
        [np.full(4, yaw) + np.linspace(0, 0.5, 4) * yaw, np.linspace(-0.08, 0.29, 4)], axis=1
    )
    pts[31:36] = np.stack(
        [
            np.array([-0.17, -0.09, 0.0, 0.09, 0.17]) + 1.4 * yaw,
            np.array([0.35, 0.375, 0.39, 0.375, 0.35]),
        ],
        axis=1,
    )
    # Eyes: 36-41 image-left eye (outer corner first), 42-47 image-right eye (inner first).
    eye_open = float(np.clip(c.eye_open, 0, 1))
    up, low = _EYE_H * eye_open, 0.6 * _EYE_H * eye_open
    eyes = []
    for start, cu in ((36, -_EYE_U), (42, _EYE_U)):
        cu = cu + yaw
        left, right = np.array([cu - _EYE_HALF_W, _EYE_V]), np.array([cu + _EYE_HALF_W, _EYE_V])
        upper = _arc(left, right, up + 1e-3, 9)  # bulge up (to the left of left->right)
        lower = _arc(right, left, low + 1e-3, 9)
        # Corners, then landmarks at a third and two thirds of each lid. iBUG orders both eyes
        # clockwise from their image-left corner (outer for 36-41, inner for 42-47).
        pts[start : start + 6] = [left, upper[3], upper[5], right, lower[3], lower[5]]
        eyes.append(
            {
                "poly": np.concatenate([upper, lower[1:-1]]),
                "upper": upper,
                "center": np.array([cu, _EYE_V]),
                # Where the iris looks (drawing only): the gaze moves it inside the eye.
                "iris": np.array(
                    [cu + 0.35 * _EYE_HALF_W * c.gaze_x, _EYE_V + 0.3 * _EYE_H * c.gaze_y]
                ),
            }
        )
    # Mouth: outer 48-59 and inner 60-67 lips; the lower lip and jaw follow the opening.
    mw = _MOUTH_HALF_W * (1 + 0.15 * c.mouth_wide - 0.12 * o)
    mu, mv = 1.2 * yaw, _MOUTH_V
    gap = _LIP_GAP * o
    top_in, bottom_in = mv - 0.015 - 0.25 * gap, mv + 0.75 * gap
    left, right = np.array([mu - mw, mv]), np.array([mu + mw, mv])
    upper_out = _arc(left, right, 0.085 + 0.02 * o, 7)  # 48..54
    upper_out[3, 1] += 0.025  # the cupid's bow dip at 51
    lower_out = _arc(right, left, bottom_in - mv + 0.095, 7)  # 54..48
    pts[48:55] = upper_out
    pts[55:60] = lower_out[1:6]
    inner_l, inner_r = np.array([mu - 0.8 * mw, mv]), np.array([mu + 0.8 * mw, mv])
    upper_in = _arc(inner_l, inner_r, mv - top_in, 5)  # 60..64
    lower_in = _arc(inner_r, inner_l, bottom_in - mv, 5)  # 64..60
    pts[60:65] = upper_in
    pts[65:68] = lower_in[1:4]
    shapes = {
        "eyes": eyes,
        "lips_outer": np.concatenate([upper_out, lower_out[1:-1]]),
        "lips_inner": np.concatenate([upper_in, lower_in[1:-1]]),
    }
    return pts, shapes


# ------------------------------------------------------------------ hands
# Hand layout in palm units: a across the palm towards the thumb, b along the fingers.
_KNUCKLES = np.array([[0.34, 0.96], [0.11, 1.0], [-0.12, 0.97], [-0.33, 0.9]])
_FINGER_LEN = np.array([0.78, 0.86, 0.80, 0.62])
_FINGER_FAN = np.array([0.13, 0.02, -0.09, -0.21])
_PHALANX = np.array([0.46, 0.30, 0.24])


def hand_points(
    wrist, angle: float, thumb_sign: float, palm: float, spread: float, curl: float
) -> np.ndarray:
    """The 21 hand keypoints ``(21, 2)``: wrist, then thumb..little finger, base to tip.

    ``angle`` rotates the hand from fingers-up (positive = clockwise in the image);
    ``thumb_sign`` is +1 when the thumb points to image-right (the person's right hand with the
    palm to the camera), -1 for the left hand.
    """
    b_axis = np.array([np.sin(angle), -np.cos(angle)])  # along the fingers
    a_axis = thumb_sign * np.array([np.cos(angle), np.sin(angle)])  # towards the thumb
    basis = np.stack([a_axis, b_axis]) * palm

    def to_px(ab: np.ndarray) -> np.ndarray:
        return np.asarray(wrist, float) + ab @ basis

    pts = np.zeros((21, 2))
    pts[0] = to_px(np.zeros(2))
    # Thumb: a chain fanning away from the palm, more so when the hand is spread.
    thumb_dir = np.array([np.sin(0.75 + 0.2 * spread), np.cos(0.75 + 0.2 * spread)])
    base = np.array([0.26, 0.20])
    seg = np.array([0.0, 0.30, 0.26, 0.24]) * (1 - 0.3 * curl)
    for i in range(4):
        base = base + seg[i] * thumb_dir
        pts[1 + i] = to_px(base)
    # Fingers: knuckle, then three phalanges along a fanned direction, shortened by curling
    # (a finger bending towards the camera-facing palm is foreshortened in the image).
    for f in range(4):
        fan = _FINGER_FAN[f] * spread
        direction = np.array([np.sin(fan), np.cos(fan)])
        joint = _KNUCKLES[f].copy()
        pts[5 + 4 * f] = to_px(joint)
        for j in range(3):
            joint = joint + _FINGER_LEN[f] * _PHALANX[j] * (1 - curl * (0.3 + 0.25 * j)) * direction
            pts[6 + 4 * f + j] = to_px(joint)
    return pts


def _palm_polygon(hand: np.ndarray, palm: float) -> np.ndarray:
    """Palm outline ``(8, 2)`` around the wrist, thumb base and knuckles (``palm`` in px)."""
    wrist, index_k, little_k = hand[0], hand[5], hand[17]
    across = (index_k - little_k) / (np.linalg.norm(index_k - little_k) + 1e-9)
    return np.array(
        [
            wrist - 0.32 * palm * across,
            hand[1] + 0.1 * palm * across,
            hand[2],
            index_k + 0.15 * palm * across,
            0.5 * (index_k + hand[9]),
            hand[13],
            little_k - 0.12 * palm * across,
            0.5 * (little_k + wrist) - 0.18 * palm * across,
        ]
    )


# ------------------------------------------------------------------ figure
def _offsets(origin, offsets, scale: float) -> np.ndarray:
    """``origin + offsets * scale``: polygons written as offsets in fractions of the side."""
    return np.asarray(origin, float) + np.asarray(offsets, float) * scale


def _body(ch: Character, cx: float, sy: float, top_y: float, s: float) -> dict:
    """Neck, jacket (with rounded shoulders), shirt collar, tie and lapels, in pixels.

    ``cx`` is the body's midline, ``sy`` the shoulder-joint height, ``top_y`` the neck's top.
    """
    nw = ch.neck_w
    base = np.array([cx, sy - 0.06 * s])  # where the neck meets the shoulders
    neck = np.array(
        [[cx - nw * s, top_y], [cx + nw * s, top_y]]
        + [_offsets(base, [sgn * 1.1 * nw, 0.03], s) for sgn in (1, -1)]
    )
    # The rounded shoulder sits outside and below the joint: MediaPipe (trained on people) puts
    # the shoulder keypoint about there inside such a silhouette.
    deltoid = 0.5 * ch.arm_w * s + 0.012 * s
    delt_r = _offsets([cx, sy], [-ch.shoulder_x - ch.deltoid_out, 0.03], s)
    delt_l = _offsets([cx, sy], [ch.shoulder_x + ch.deltoid_out, 0.03], s)
    neck_r, neck_l = _offsets(base, [-1.5 * nw, 0], s), _offsets(base, [1.5 * nw, 0], s)
    circle_r = _ellipse(delt_r, deltoid, deltoid, n=16)
    circle_l = _ellipse(delt_l, deltoid, deltoid, n=16)
    waist = 1.15 * ch.waist  # the polygon's bottom lies at 1.3 x size, off the frame
    torso = np.concatenate(
        [
            [neck_r],
            _arc(neck_r, delt_r + [0.2 * deltoid, -deltoid], 0.01 * s, 6),  # trapezius
            circle_r[[12, 11, 10, 9, 8]],  # over the top of the shoulder
            [[delt_r[0] - deltoid, sy + 0.2 * s], [cx - waist * s, 1.3 * s]],
            [[cx + waist * s, 1.3 * s], [delt_l[0] + deltoid, sy + 0.2 * s]],
            circle_l[[0, 15, 14, 13, 12]],
            _arc(delt_l + [-0.2 * deltoid, -deltoid], neck_l, 0.01 * s, 6),
        ]
    )
    v_bottom = 0.22  # the collar's V, below the neck base
    collar = _offsets(base, [[-1.25 * nw, -0.01], [1.25 * nw, -0.01], [0, v_bottom]], s)
    tie = None
    if ch.tie is not None:
        tie_pts = [[-0.02, 0.005], [0.02, 0.005], [0.028, v_bottom + 0.02], [0, v_bottom + 0.05]]
        tie = _offsets(base, [*tie_pts, [-0.028, v_bottom + 0.02]], s)
    lapels = [
        _offsets(base, [[sgn * 1.5 * nw, 0], [sgn * 0.1, 0.11], [sgn * 0.01, v_bottom + 0.04]], s)
        for sgn in (-1, 1)
    ]
    return {"neck": neck, "torso": torso, "collar": collar, "tie": tie, "lapels": lapels}


def _arm(ch: Character, shoulder, target, angle: float, spread: float, curl: float,
         outward: float, s: float):  # fmt: skip
    """One arm: ``(drawn (shoulder, bend, wrist), elbow keypoint, 21 hand points, palm)``.

    ``outward`` is -1 for the right arm (image left) and +1 for the left arm.
    """
    elbow, wrist = _place_arm(shoulder, target, ch.upper_arm * s, ch.forearm * s, outward, s)
    # The elbow keypoint is the bent arm's outer tip (COCO annotators click there, and so
    # MediaPipe learnt it): the drawn limbs meet one sleeve radius before it.
    upper = elbow - shoulder
    bend = elbow - 0.5 * ch.elbow_w * s * upper / (np.linalg.norm(upper) + 1e-9)
    # The hand carries on 40 % of the forearm's lean from vertical plus its own tilt (positive
    # = away from the midline); the right hand's thumb (palm to camera) points to image-right.
    fore = wrist - elbow
    lean = np.arctan2(fore[0], -fore[1])  # clockwise from straight up
    hand = hand_points(wrist, 0.4 * lean + outward * angle, -outward, ch.palm * s, spread, curl)
    return (shoulder, bend, wrist), elbow, hand, _palm_polygon(hand, ch.palm * s)


def figure(ch: Character, c: Controls, size: int, front_hand: str = "right") -> Figure:
    """Build one frame's shapes and keypoints from the character and the controls."""
    s = float(size)
    cx = 0.5 * s + c.body_dx * s
    body_dy = c.body_dy * s
    # Head: the face oval's centre, axes (rotated by the roll) and the 68 landmarks.
    center = np.array([cx + c.head_dx * s, ch.head_y * s + body_dy + c.head_dy * s])
    rot = _rot(c.head_roll)
    axes = np.stack([rot[:, 0] * ch.face_w * s, rot[:, 1] * ch.face_h * s])

    def face_px(uv: np.ndarray) -> np.ndarray:
        return center + np.asarray(uv) @ axes

    face_uv, shapes = _face_landmarks(c)
    face = face_px(face_uv)
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    outline = face_px(_face_outline_point(theta, _JAW_DROP * float(np.clip(c.mouth_open, 0, 1))))
    ears = [face_px(np.array([sgn * 1.0, 0.02])) for sgn in (-1, 1)]
    ear_r = (0.16 * ch.face_w * s, 0.27 * ch.face_h * s)
    hair_back, hair_front = _hair(ch, face_px)

    sy = ch.shoulder_y * s + body_dy - c.shrug * s
    body = _body(ch, cx, sy, ch.head_y * s + body_dy + 0.6 * ch.face_h * s, s)
    arms, elbows, hands, palms = {}, {}, {}, {}
    for side, sign, target, angle, spread, curl in (
        ("right", -1.0, c.wrist_r, c.hand_angle_r, c.spread_r, c.curl_r),
        ("left", 1.0, c.wrist_l, c.hand_angle_l, c.spread_l, c.curl_l),
    ):
        shoulder = np.array([cx + sign * ch.shoulder_x * s, sy])
        target = np.array([target[0] * s + c.body_dx * s, target[1] * s + body_dy])
        arms[side], elbows[side], hands[side], palms[side] = _arm(
            ch, shoulder, target, angle, spread, curl, sign, s
        )

    pts = np.zeros((kp.N_KEYPOINTS, 2))
    b = kp.BODY_INDEX
    pts[b["nose"]] = face[30]
    pts[b["right_eye"]] = face[36:42].mean(axis=0)
    pts[b["left_eye"]] = face[42:48].mean(axis=0)
    pts[b["right_ear"]], pts[b["left_ear"]] = ears
    for side, sign in (("right", -1), ("left", 1)):
        pts[b[f"{side}_shoulder"]] = arms[side][0]
        pts[b[f"{side}_elbow"]] = elbows[side]
        pts[b[f"{side}_wrist"]] = arms[side][2]
        pts[b[f"{side}_hip"]] = [cx + sign * 0.17 * s, sy + 0.58 * s]  # below the frame
    pts[kp.FACE] = face
    pts[kp.LEFT_HAND] = hands["left"]
    pts[kp.RIGHT_HAND] = hands["right"]
    # Long hair falls over the ears and the top of the jaw line: those points are hidden.
    head_points = np.r_[np.arange(0, 5), np.arange(kp.FACE.start, kp.FACE.stop)]
    under_hair = np.zeros(kp.N_KEYPOINTS, bool)
    for part in hair_front:
        under_hair[head_points] |= points_in_polygon(part, pts[head_points])

    return Figure(
        keypoints=pts,
        head_outline=outline,
        **body,
        arms=arms,
        palms=palms,
        eyes=[{k: face_px(v) for k, v in e.items()} for e in shapes["eyes"]],
        brows=[face[17:22], face[22:27]],
        nose=_nose_polygon(face),
        nostrils=[0.6 * face[i] + 0.4 * face[30] for i in (32, 34)],
        lips_outer=face_px(shapes["lips_outer"]),
        lips_inner=face_px(shapes["lips_inner"]),
        mouth_open=float(np.clip(c.mouth_open, 0, 1)),
        ears=[_ellipse(e, *ear_r, c.head_roll, 16) for e in ears],
        hair_back=hair_back,
        hair_front=hair_front,
        front_hand=front_hand,
        under_hair=under_hair,
    )


def _nose_polygon(face: np.ndarray) -> np.ndarray:
    """A soft nose shape from the bridge landmarks to the alar base."""
    top = face[27]
    return np.array(
        [
            top + (face[31] - face[35]) * 0.12,
            face[31],
            face[32] + [0, 0.6],
            face[33] + [0, 1.0],
            face[34] + [0, 0.6],
            face[35],
            top - (face[31] - face[35]) * 0.12,
        ]
    )


def _hair(ch: Character, face_px) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Hair polygons: ``(back, front)``; back is drawn behind the head, front over it."""
    t = np.linspace(np.pi + 0.25, 2 * np.pi - 0.25, 21)  # the top of the skull
    cap = np.stack([1.08 * np.cos(t), -0.12 + 1.02 * np.sin(t)], axis=1)
    back = None
    if ch.hair_style == "short":
        front = np.concatenate(
            [
                [[-1.04, 0.0]],
                cap,
                [[1.04, 0.0], [0.92, -0.38], [0.3, -0.62], [-0.4, -0.58], [-0.92, -0.38]],
            ]
        )
        fronts = [front]
    elif ch.hair_style == "side":  # a side parting sweeping to the image right
        front = np.concatenate(
            [
                [[-1.05, -0.05]],
                cap,
                [
                    [1.06, -0.02],
                    [0.95, -0.3],
                    [0.4, -0.5],
                    [-0.2, -0.72],
                    [-0.55, -0.62],
                    [-0.95, -0.35],
                ],
            ]
        )
        fronts = [front]
    elif ch.hair_style == "long":  # shoulder-length hair framing the face
        crown = np.linspace(0.1, np.pi - 0.1, 17)  # a rounded top behind the head
        top = np.stack([-1.22 * np.cos(crown), -0.1 - 1.08 * np.sin(crown)], axis=1)
        back = np.concatenate([[[-1.28, 1.45], [-1.34, 0.6]], top, [[1.34, 0.6], [1.28, 1.45]]])
        front = np.concatenate(
            [
                [[-1.12, 0.55], [-1.14, -0.05]],
                cap,
                [
                    [1.14, -0.05],
                    [1.12, 0.55],
                    [0.97, 0.4],
                    [0.9, -0.35],
                    [0.2, -0.66],
                    [-0.6, -0.5],
                    [-0.9, -0.35],
                    [-0.97, 0.4],
                ],
            ]
        )
        fronts = [front]
    elif ch.hair_style == "bun":  # hair pulled back, a bun on top
        front = np.concatenate(
            [[[-1.03, -0.1]], cap, [[1.03, -0.1], [0.92, -0.45], [0.0, -0.7], [-0.92, -0.45]]]
        )
        bun = _ellipse([0.0, -1.15], 0.42, 0.28, n=16)
        fronts = [bun, front]
    else:
        raise ValueError(f"unknown hair style {ch.hair_style!r}")
    return (None if back is None else face_px(back)), [face_px(f) for f in fronts]
