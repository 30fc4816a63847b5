"""Drawing of the sample corpus's figures: shaded parts that MediaPipe detects.

Why shaded: MediaPipe's pose and hand detectors ignore flat single-colour cartoons but accept a
render whose parts are filled shapes darker towards their edges (see
``shared/reference/mediapipe-on-renders.md``). Every part is therefore painted through
:meth:`Canvas.paint`, which darkens a shape's mask by its distance to the edge (a cheap radial
shading from ``cv2.distanceTransform``) and lights it slightly from the upper left.
:func:`draw` paints a :class:`~pipeline.corpus.sample.figure.Figure` over :func:`background`.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline import keypoints as kp
from pipeline.corpus.sample.figure import ONE, RGB, SHIFT, Character, Figure, _ellipse, _limb


# ------------------------------------------------------------------ drawing
class Canvas:
    """A float32 RGB image that shaded shapes are painted into (see the module docstring)."""

    def __init__(self, background: np.ndarray):
        self.image = background.astype(np.float32, copy=True)
        self.size = background.shape[0]

    def _roi(self, pts: np.ndarray, pad: float) -> tuple[int, int, int, int]:
        x0, y0 = np.floor(pts.min(axis=0) - pad).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0) + pad).astype(int) + 1
        return x0, y0, x1, y1

    def _mask(self, pts: np.ndarray, pad: float, draw) -> tuple[np.ndarray, int, int] | None:
        x0, y0, x1, y1 = self._roi(pts, pad)
        # Skip shapes entirely outside the frame; clip the ROI to a margin around it so huge
        # off-frame shapes (the torso's bottom) cost nothing.
        if x1 <= 0 or y1 <= 0 or x0 >= self.size or y0 >= self.size:
            return None
        x0, y0 = max(x0, -8), max(y0, -8)
        x1, y1 = min(x1, self.size + 8), min(y1, self.size + 8)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        local = np.round((pts - [x0, y0]) * ONE).astype(np.int32)
        draw(mask, local)
        return mask, x0, y0

    def poly_mask(self, pts: np.ndarray):
        return self._mask(pts, 2, lambda m, p: cv2.fillPoly(m, [p], 255, cv2.LINE_AA, SHIFT))

    def capsule_mask(self, pts: np.ndarray, width: float):
        thick = max(int(round(width)), 1)
        return self._mask(
            pts,
            width / 2 + 2,
            lambda m, p: cv2.polylines(m, [p], False, 255, thick, cv2.LINE_AA, SHIFT),
        )

    def paint(
        self,
        shape,
        color: RGB,
        lo: float = 0.62,
        falloff: float = 0.6,
        clip: tuple[np.ndarray, int, int] | None = None,
    ) -> None:
        """Composite a mask ``(mask, x0, y0)`` in ``color``, darker by ``lo`` at the edge.

        Brightness rises from ``lo`` at the outline to 1 at ``falloff`` of the shape's largest
        inner distance. ``clip`` (another mask) restricts painting to its inside.
        """
        if shape is None:
            return
        mask, x0, y0 = shape
        if clip is not None:
            mask = mask.copy()
            cmask, cx0, cy0 = clip
            mask = mask.astype(np.float32) * _window(cmask, cx0, cy0, x0, y0, mask.shape) / 255
            mask = mask.astype(np.uint8)
        inside = (mask >= 128).astype(np.uint8)
        if not inside.any():
            return
        dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        t = np.minimum(dist / max(falloff * float(dist.max()), 0.75), 1.0)
        shade = lo + (1 - lo) * np.sqrt(t)
        h, w = mask.shape
        # A soft light from the upper left gives every shape a sense of volume.
        shade *= 1.06 - 0.12 * (np.linspace(0, 1, w)[None, :] * 0.5 + np.linspace(0, 1, h)[:, None])
        # Crop to the frame.
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + w, self.size), min(y0 + h, self.size)
        if fx1 <= fx0 or fy1 <= fy0:
            return
        sl = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
        alpha = (mask[sl].astype(np.float32) / 255.0)[..., None]
        colour = np.asarray(color, np.float32) * shade[sl][..., None]
        roi = self.image[fy0:fy1, fx0:fx1]
        roi += alpha * (colour - roi)

    def line(self, pts: np.ndarray, color: RGB, width: float, alpha: float = 1.0) -> None:
        """An unshaded antialiased polyline (lash lines, lapel creases)."""
        shape = self.capsule_mask(pts, width)
        if shape is None:
            return
        mask, x0, y0 = shape
        h, w = mask.shape
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + w, self.size), min(y0 + h, self.size)
        if fx1 <= fx0 or fy1 <= fy0:
            return
        a = mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0].astype(np.float32) / 255 * alpha
        roi = self.image[fy0:fy1, fx0:fx1]
        roi += a[..., None] * (np.asarray(color, np.float32) - roi)

    def to_uint8(self) -> np.ndarray:
        return np.clip(self.image + 0.5, 0, 255).astype(np.uint8)


def _window(cmask, cx0, cy0, x0, y0, shape) -> np.ndarray:
    """The part of mask ``cmask`` (at ``cx0, cy0``) under a ``shape`` window at ``x0, y0``."""
    out = np.zeros(shape, np.float32)
    h, w = shape
    ch_, cw = cmask.shape
    ox0, oy0 = max(x0, cx0), max(y0, cy0)
    ox1, oy1 = min(x0 + w, cx0 + cw), min(y0 + h, cy0 + ch_)
    if ox1 > ox0 and oy1 > oy0:
        out[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = cmask[
            oy0 - cy0 : oy1 - cy0, ox0 - cx0 : ox1 - cx0
        ]
    return out


def background(ch: Character, size: int) -> np.ndarray:
    """A smooth vertical gradient with a soft vignette: ``(size, size, 3)`` float32."""
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    x = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None]
    top, bottom = np.asarray(ch.bg_top, np.float32), np.asarray(ch.bg_bottom, np.float32)
    image = top + (bottom - top) * y
    vignette = 1.0 - 0.12 * (x**2) - 0.05 * (y - 0.35) ** 2
    return np.broadcast_to(image * vignette, (size, size, 3)).astype(np.float32)


def _darker(color: RGB, f: float) -> RGB:
    return tuple(float(v) * f for v in color)  # type: ignore[return-value]


def draw(ch: Character, fig: Figure, bg: np.ndarray) -> np.ndarray:
    """Paint ``fig`` over the background ``bg``: ``(size, size, 3)`` uint8 RGB."""
    cv = Canvas(bg)
    size = cv.size
    u = size / 256.0  # line widths were tuned at 256 px
    if fig.hair_back is not None:
        cv.paint(cv.poly_mask(fig.hair_back), ch.hair, lo=0.45)
    cv.paint(cv.poly_mask(fig.neck), _darker(ch.skin, 0.85), lo=0.55)
    cv.paint(cv.poly_mask(fig.torso), ch.jacket, lo=0.5, falloff=0.35)
    cv.paint(cv.poly_mask(fig.collar), ch.shirt, lo=0.7)
    if fig.tie is not None and ch.tie is not None:
        cv.paint(cv.poly_mask(fig.tie), ch.tie, lo=0.55)
    for lapel in fig.lapels:
        cv.line(lapel, _darker(ch.jacket, 0.55), 1.6 * u, 0.8)
    # Head: ears, face oval, features, hair.
    for ear in fig.ears:
        cv.paint(cv.poly_mask(ear), _darker(ch.skin, 0.92), lo=0.6)
    face_mask = cv.poly_mask(fig.head_outline)
    cv.paint(face_mask, ch.skin, lo=0.68, falloff=0.7)
    cv.paint(cv.poly_mask(fig.nose), _darker(ch.skin, 0.9), lo=0.8, falloff=0.8)
    for nostril in fig.nostrils:
        cv.paint(cv.poly_mask(_ellipse(nostril, 1.7 * u, 1.1 * u, n=10)), (70, 40, 35), lo=0.8)
    for eye in fig.eyes:
        _draw_eye(cv, ch, eye, u)
    for brow in fig.brows:
        cv.paint(cv.capsule_mask(brow, 3.2 * u), _darker(ch.hair, 0.9), lo=0.6)
    _draw_mouth(cv, ch, fig, u)
    for part in fig.hair_front:
        cv.paint(cv.poly_mask(part), ch.hair, lo=0.45, falloff=0.5)
    # Arms and hands, the front hand last.
    order = ["left", "right"] if fig.front_hand == "right" else ["right", "left"]
    for side in order:
        shoulder, elbow, wrist = fig.arms[side]
        half = 0.5 * size
        cv.paint(
            cv.poly_mask(_limb(shoulder, elbow, ch.arm_w * half, ch.elbow_w * half)),
            ch.jacket,
            lo=0.4,
        )
        # A cuff where the sleeve is rolled up, then the bare, tapering forearm.
        cuff = elbow + 0.16 * (wrist - elbow)
        cv.paint(
            cv.poly_mask(_limb(elbow, cuff, ch.elbow_w * half, ch.elbow_w * 0.95 * half)),
            ch.shirt,
            lo=0.55,
        )
        cv.paint(
            cv.poly_mask(
                _limb(elbow + 0.12 * (wrist - elbow), wrist, ch.forearm_w * half, ch.wrist_w * half)
            ),
            ch.skin,
            lo=0.55,
        )
        _draw_hand(cv, ch, fig, side, size)
    return cv.to_uint8()


def _draw_eye(cv: Canvas, ch: Character, eye: dict, u: float) -> None:
    upper = eye["upper"]
    height = np.ptp(eye["poly"][:, 1])
    width = np.linalg.norm(upper[-1] - upper[0])
    if height > 0.12 * width:
        white = cv.poly_mask(eye["poly"])
        cv.paint(white, (245, 243, 238), lo=0.75)
        r = 0.2 * width
        cv.paint(cv.poly_mask(_ellipse(eye["iris"], r, r, n=16)), ch.iris, lo=0.5, clip=white)
        cv.paint(
            cv.poly_mask(_ellipse(eye["iris"], 0.45 * r, 0.45 * r, n=12)),
            (15, 12, 12),
            lo=0.9,
            clip=white,
        )
        glint = eye["iris"] + [-0.3 * r, -0.35 * r]
        cv.paint(
            cv.poly_mask(_ellipse(glint, 0.8 * u, 0.8 * u, n=8)),
            (255, 255, 255),
            lo=1.0,
            clip=white,
        )
    # The upper lash line (also the closed eye).
    cv.line(upper, (35, 25, 25), 1.6 * u)


def _draw_mouth(cv: Canvas, ch: Character, fig: Figure, u: float) -> None:
    cv.paint(cv.poly_mask(fig.lips_outer), ch.lips, lo=0.6)
    inner = fig.lips_inner
    if fig.mouth_open > 0.06:
        mouth = cv.poly_mask(inner)
        cv.paint(mouth, (70, 22, 28), lo=0.55)
        # Upper teeth: a band along the top of the opening.
        top = inner[:5]
        teeth = np.concatenate([top, top[::-1] + [0, 0.3 * np.ptp(inner[:, 1]) + 1.0]])
        cv.paint(cv.poly_mask(teeth), (238, 236, 228), lo=0.8, clip=mouth)
    else:
        cv.line(inner[:5], _darker(ch.lips, 0.55), 1.2 * u)


def _draw_hand(cv: Canvas, ch: Character, fig: Figure, side: str, size: int) -> None:
    hand = fig.keypoints[kp.LEFT_HAND if side == "left" else kp.RIGHT_HAND]
    finger_w = ch.finger_width(size)
    cv.paint(cv.poly_mask(fig.palms[side]), ch.skin, lo=0.6, falloff=0.7)
    cv.paint(cv.capsule_mask(hand[1:5], 1.15 * finger_w), ch.skin, lo=0.55)
    for f in range(4):
        chain = hand[5 + 4 * f : 9 + 4 * f]
        cv.paint(cv.capsule_mask(chain, finger_w * (0.9 if f == 3 else 1.0)), ch.skin, lo=0.55)
