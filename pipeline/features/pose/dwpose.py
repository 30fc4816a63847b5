"""The ``dwpose`` pose backend: DWPose whole-body keypoints from its ONNX release.

DWPose (Yang et al., ICCV 2023 workshops; the paper's pose extractor) is published as two ONNX
files, which this backend loads from a local folder (``extract.dwpose_dir``):

- ``yolox_l.onnx``: a YOLOX-L COCO detector (640 x 640 input) that finds the person box;
- ``dw-ll_ucoco_384.onnx``: the DWPose-L whole-body model (288 x 384 input, SimCC output) that
  gives the 133 COCO-WholeBody keypoints of that box directly in the layout of
  :mod:`pipeline.keypoints`.

Why not ``controlnet_aux.DWposeDetector``: the PyPI ``controlnet-aux`` runs DWPose through
mmdet/mmpose with ``.pth`` checkpoints and config files, not the ONNX release, and it reorders the
keypoints into OpenPose order for drawing. The two ONNX models are therefore run here directly
with onnxruntime, following DWPose's published ONNX inference: letterbox the frame to 640 x 640
(grey 114 padding, no normalisation), decode YOLOX's grid outputs (strides 8, 16, 32; score =
objectness x person-class probability); take the best person box, enlarge it by 1.25 and extend
it to the model's 3:4 aspect ratio, warp it to 288 x 384, normalise with the ImageNet mean and
std; decode SimCC by arg-max (split ratio 2), score = min of the x and y maxima, clipped to
[0, 1]. The clips show one speaker, so only the highest-scoring person is kept; a frame where no
person scores above ``det_threshold`` has all scores 0.

The detector gets BGR (mmdet trained YOLOX on OpenCV-loaded BGR images), the pose model RGB
(mmpose's preprocessor converts to RGB before normalising). Needs onnxruntime (the ``dwpose``
extra; ``onnxruntime-gpu`` for CUDA). Not run by the CPU test suite: no weights are shipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.errors import MissingInputError
from pipeline.features.pose import PoseBackend, check_frames, drop_outside
from pipeline.keypoints import N_KEYPOINTS, empty_pose

DET_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
INSTALL_HINT = (
    "dwpose backend needs the 'dwpose' extra: pip install paha[dwpose] "
    "(it runs DWPose's ONNX models with onnxruntime; use onnxruntime-gpu on GPU hosts)"
)

YOLOX_STRIDES = (8, 16, 32)
YOLOX_PAD_VALUE = 114
PERSON_CLASS = 0
BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
# ImageNet mean and std in RGB order, as in DWPose's (mmpose) data preprocessor.
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def _input_hw(session: Any, default: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an NCHW ONNX input; ``default`` where the axes are symbolic."""
    shape = session.get_inputs()[0].shape
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    return default


def detect_person(session: Any, frame: np.ndarray, threshold: float) -> np.ndarray | None:
    """Best person box ``(4,)`` float64 ``[x0, y0, x1, y1]`` in frame pixels, or None.

    ``frame``: ``(H, W, 3)`` uint8 RGB. ``session``: the YOLOX ONNX session; its raw output
    ``(1, N, 5 + classes)`` holds per anchor (dx, dy, log w, log h, objectness, class probs).
    """
    in_h, in_w = _input_hw(session, (640, 640))
    height, width = frame.shape[:2]
    ratio = min(in_h / height, in_w / width)
    new_w, new_h = max(int(width * ratio), 1), max(int(height * ratio), 1)
    canvas = np.full((in_h, in_w, 3), YOLOX_PAD_VALUE, dtype=np.uint8)
    resized = cv2.resize(
        np.ascontiguousarray(frame[..., ::-1]), (new_w, new_h), interpolation=cv2.INTER_LINEAR
    )
    canvas[:new_h, :new_w] = resized  # letterbox at the top-left corner, as YOLOX's demo does
    blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
    raw = session.run(None, {session.get_inputs()[0].name: blob})[0][0].astype(np.float64)

    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        gy, gx = np.mgrid[0 : in_h // stride, 0 : in_w // stride]
        grids.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        strides.append(np.full(gx.size, stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)[:, None]
    if len(grid) != len(raw):
        raise RuntimeError(f"YOLOX output has {len(raw)} anchors, expected {len(grid)} for a "
                           f"{in_w}x{in_h} input")  # fmt: skip

    scores = raw[:, 4] * raw[:, 5 + PERSON_CLASS]
    best = int(np.argmax(scores))
    if not scores[best] > threshold:
        return None
    centre = (raw[best, :2] + grid[best]) * stride[best]
    size = np.exp(raw[best, 2:4]) * stride[best]
    box = np.concatenate([centre - size / 2, centre + size / 2]) / ratio
    box[[0, 2]] = np.clip(box[[0, 2]], 0, width)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, height)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def estimate_keypoints(session: Any, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Whole-body keypoints ``(133, 3)`` float32 (x, y in frame pixels, score in [0, 1]).

    ``frame``: ``(H, W, 3)`` uint8 RGB; ``box``: the person ``[x0, y0, x1, y1]``; ``session``:
    the DWPose ONNX session with outputs SimCC x ``(1, 133, W * 2)`` and y ``(1, 133, H * 2)``.
    """
    in_h, in_w = _input_hw(session, (384, 288))
    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    box_w, box_h = (box[2] - box[0]) * BOX_PADDING, (box[3] - box[1]) * BOX_PADDING
    aspect = in_w / in_h
    if box_w > box_h * aspect:  # widen or heighten the box to the model's aspect ratio
        box_h = box_w / aspect
    else:
        box_w = box_h * aspect
    zoom = in_w / box_w  # pixels of the model input per frame pixel (same in x and y)
    warp = np.array([[zoom, 0.0, in_w / 2 - zoom * centre[0]],
                     [0.0, zoom, in_h / 2 - zoom * centre[1]]])  # fmt: skip
    crop = cv2.warpAffine(frame, warp, (in_w, in_h), flags=cv2.INTER_LINEAR)
    blob = ((crop.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)[None]
    outputs = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(blob)})
    first, second = (np.asarray(o, dtype=np.float64)[0] for o in outputs[:2])
    bins_x, bins_y = round(in_w * SIMCC_SPLIT_RATIO), round(in_h * SIMCC_SPLIT_RATIO)
    if first.shape[-1] == bins_x and second.shape[-1] == bins_y:
        simcc_x, simcc_y = first, second
    elif first.shape[-1] == bins_y and second.shape[-1] == bins_x:
        simcc_x, simcc_y = second, first
    else:
        raise RuntimeError(
            f"DWPose outputs {first.shape} and {second.shape} do not match a "
            f"{in_w}x{in_h} input with SimCC split ratio {SIMCC_SPLIT_RATIO}"
        )
    if simcc_x.shape[0] != N_KEYPOINTS or simcc_y.shape[0] != N_KEYPOINTS:
        raise RuntimeError(f"DWPose output has {simcc_x.shape[0]} keypoints, "
                           f"expected {N_KEYPOINTS}")  # fmt: skip

    x = np.argmax(simcc_x, axis=1) / SIMCC_SPLIT_RATIO
    y = np.argmax(simcc_y, axis=1) / SIMCC_SPLIT_RATIO
    score = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    keypoints = np.empty((N_KEYPOINTS, 3), dtype=np.float32)
    keypoints[:, 0] = (x - in_w / 2) / zoom + centre[0]  # back from model input to frame pixels
    keypoints[:, 1] = (y - in_h / 2) / zoom + centre[1]
    keypoints[:, 2] = np.clip(score, 0.0, 1.0)
    return keypoints


class DWPoseBackend(PoseBackend):
    """DWPose (ONNX, onnxruntime) as a :class:`PoseBackend`.

    Args:
        weights_dir: folder holding ``det_file`` and ``pose_file``.
        gpu: None (onnxruntime's ``CUDAExecutionProvider`` when it offers it, else the CPU),
            True (that provider, an error without it) or False (the CPU only).
        det_threshold: smallest person score (objectness x class) of a detection.
    """

    name = "dwpose"

    def __init__(
        self,
        weights_dir: str | Path,
        det_file: str = DET_FILE,
        pose_file: str = POSE_FILE,
        gpu: bool | None = None,
        det_threshold: float = 0.3,
    ) -> None:
        folder = Path(weights_dir)
        missing = [name for name in (det_file, pose_file) if not (folder / name).is_file()]
        if missing:
            raise MissingInputError(
                f"{folder}: DWPose ONNX weights not found (missing {', '.join(missing)}); the "
                f"folder must hold {det_file} (YOLOX person detector) and {pose_file} "
                f"(DWPose whole-body model) from DWPose's ONNX release"
            )
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ImportError(INSTALL_HINT) from error

        available = ort.get_available_providers()
        if gpu and "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"DWPose on the GPU asked for, but onnxruntime offers only "
                               f"{available} (install onnxruntime-gpu)")  # fmt: skip
        providers = ["CPUExecutionProvider"]
        if gpu is not False and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        det = ort.InferenceSession(str(folder / det_file), providers=providers)
        pose = ort.InferenceSession(str(folder / pose_file), providers=providers)
        self._setup(det, pose, det_threshold)

    @classmethod
    def from_sessions(cls, det_session: Any, pose_session: Any,
                      det_threshold: float = 0.3) -> DWPoseBackend:  # fmt: skip
        """A backend on already-built sessions (anything with onnxruntime's ``get_inputs`` and
        ``run``): for callers that manage sessions themselves, and for tests."""
        backend = cls.__new__(cls)
        backend._setup(det_session, pose_session, det_threshold)
        return backend

    def _setup(self, det: Any, pose: Any, det_threshold: float) -> None:
        if not 0.0 <= det_threshold < 1.0:
            raise ValueError(f"det_threshold must be in [0, 1), got {det_threshold}")
        self._det, self._pose, self.det_threshold = det, pose, float(det_threshold)

    def estimate(self, frames: np.ndarray, clip: Mapping[str, Any] | None = None) -> np.ndarray:
        """Poses ``(T, 133, 3)`` float32 for ``frames`` ``(T, H, W, 3)`` uint8 RGB (one person).

        ``clip`` is not used.
        """
        if self._det is None:
            raise RuntimeError("DWPoseBackend is closed")
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        poses = empty_pose(len(frames))
        for t, frame in enumerate(frames):
            box = detect_person(self._det, frame, self.det_threshold)
            if box is not None:
                poses[t] = estimate_keypoints(self._pose, frame, box)
        return drop_outside(poses, width, height)

    def close(self) -> None:
        """Drop the sessions (onnxruntime frees them with the objects)."""
        self._det = self._pose = None
