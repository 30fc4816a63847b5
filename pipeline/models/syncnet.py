"""SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV-W 2016).

Two streams map 0.2 s of video and of audio to embeddings whose Euclidean distance is small when
the two are in sync. The layer list, order and submodule names are those of ``SyncNetModel.S``
in the released ``syncnet_python`` code, so that its ``syncnet_v2.model`` state dict (keys such
as ``netcnnaud.0.weight``) loads into :meth:`SyncNet.official` as it is:

- ``netcnnlip`` (video): ``(B, 3, 5, 224, 224)`` BGR frames in 0..255 ->
  Conv3d 96 (5,7,7)/(1,2,2) -> MaxPool (1,3,3)/(1,2,2) -> Conv3d 256 (1,5,5)/(1,2,2) pad (0,1,1)
  -> MaxPool (1,3,3)/(1,2,2) pad (0,1,1) -> 3 x Conv3d 256 (1,3,3) pad (0,1,1) -> MaxPool
  (1,3,3)/(1,2,2) -> Conv3d 512 (1,6,6); every conv followed by BatchNorm and ReLU.
  Spatial sides at 224: 109, 54, 26, 13, 13, 6, 1.
- ``netcnnaud`` (audio): ``(B, 1, 13, 20)`` MFCC (13 coefficients x 20 steps of 10 ms) ->
  Conv 64 3x3 -> MaxPool (1,1) -> Conv 192 3x3 -> MaxPool (3,3)/(1,2) -> Conv 384, 256, 256
  3x3 -> MaxPool (3,3)/(2,2) -> Conv 512 (5,4); every conv followed by BatchNorm and ReLU.
  Sides: 13x20, 11x9, 5x4, 1x1.
- ``netfclip`` / ``netfcaud``: Linear 512 -> BatchNorm1d -> ReLU -> Linear ``embedding``.

Embeddings are not normalised: the official evaluation compares them by plain Euclidean
distance, and so do the training loss and :mod:`pipeline.metrics.sync`.

A scaled SyncNet for training on the corpus keeps the same layer list with ``width`` times the
channels (``max(8, round(c * width))``) and face crops of ``size`` pixels. The last video conv's
kernel is the spatial side reached there, so its output is 1 x 1 (``(1, 6, 6)`` at 224); a max
pool whose input is narrower than its 3-pixel kernel uses the input side as kernel (only for
small sizes; pools have no weights, so the state-dict layout never changes).

Weights: the official file loads with ``torch.load(weights_only=True)`` (:meth:`load_official`);
SyncNets trained here are saved as ``syncnet_config.json`` + ``model.safetensors``
(:meth:`save` / :meth:`load`). A ``train_syncnet`` output folder holds one of the two; see
:func:`load_for_metric`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers.utils import BaseOutput
from torch import nn

from pipeline.errors import MissingInputError
from pipeline.models.persistence import WEIGHTS_NAME, save_folder

CONFIG_NAME = "syncnet_config.json"
OFFICIAL_RECORD = "official.json"
VIDEO_FRAMES = 5  # frames per video window (0.2 s at 25 fps)
MFCC_COEFFICIENTS = 13
MFCC_STEPS = 20  # 10 ms MFCC steps per audio window (0.2 s)
OFFICIAL_SIZE, OFFICIAL_EMBEDDING = 224, 1024


def scaled_channels(channels: int, width: float) -> int:
    """``max(8, round(channels * width))``: the channel count of a layer at ``width``."""
    return max(8, int(round(channels * width)))


def _pooled(side: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (side + 2 * padding - kernel) // stride + 1


@dataclass
class SyncNetConfig:
    """Everything needed to rebuild a :class:`SyncNet` (saved next to its weights).

    Args:
        width: channel scale (official 1.0).
        size: face crop side in pixels (official 224).
        embedding: embedding size of both streams (official 1024).
    """

    width: float = 1.0
    size: int = OFFICIAL_SIZE
    embedding: int = OFFICIAL_EMBEDDING

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"SyncNet width must be > 0, got {self.width}")
        if self.embedding < 1:
            raise ValueError(f"SyncNet embedding must be >= 1, got {self.embedding}")
        video_sides(self.size)  # raises for a crop too small for the video stream

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SyncNetConfig:
        return cls(**json.loads(text))


def video_sides(size: int) -> dict[str, int]:
    """Spatial sides through the video stream for ``size`` crops and the adapted pool kernels.

    Returns ``{"conv1", "pool1_kernel", "pool1", "conv2", "pool2", "pool3_kernel", "pool3"}``;
    ``pool3`` is the kernel of the last conv. Raises ValueError when ``size`` is too small.
    """
    if size < 7:
        raise ValueError(f"SyncNet crop size must be >= 7 px for the first conv, got {size}")
    sides = {"conv1": _pooled(size, 7, 2)}
    sides["pool1_kernel"] = min(3, sides["conv1"])
    sides["pool1"] = _pooled(sides["conv1"], sides["pool1_kernel"], 2)
    if sides["pool1"] + 2 < 5:
        raise ValueError(f"SyncNet crop size {size} is too small: the second video conv "
                         f"(5x5, padding 1) sees {sides['pool1']} px")  # fmt: skip
    sides["conv2"] = _pooled(sides["pool1"], 5, 2, 1)
    sides["pool2"] = _pooled(sides["conv2"], 3, 2, 1)
    sides["pool3_kernel"] = min(3, sides["pool2"])
    sides["pool3"] = _pooled(sides["pool2"], sides["pool3_kernel"], 2)
    return sides


def _conv_block(conv: nn.Module, channels: int, dims: int) -> list[nn.Module]:
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)
    return [conv, norm, nn.ReLU(inplace=True)]


def audio_stream(width: float) -> nn.Sequential:
    """``netcnnaud``: ``(B, 1, 13, 20)`` -> ``(B, c512, 1, 1)``; indices as in the official S."""
    c64, c192, c384, c256, c512 = (scaled_channels(c, width) for c in (64, 192, 384, 256, 512))
    return nn.Sequential(
        *_conv_block(nn.Conv2d(1, c64, 3, padding=1), c64, 2),  # 0-2
        nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),  # 3: kept for the key indices
        *_conv_block(nn.Conv2d(c64, c192, 3, padding=1), c192, 2),  # 4-6
        nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),  # 7: 13x20 -> 11x9
        *_conv_block(nn.Conv2d(c192, c384, 3, padding=1), c384, 2),  # 8-10
        *_conv_block(nn.Conv2d(c384, c256, 3, padding=1), c256, 2),  # 11-13
        *_conv_block(nn.Conv2d(c256, c256, 3, padding=1), c256, 2),  # 14-16
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),  # 17: 11x9 -> 5x4
        *_conv_block(nn.Conv2d(c256, c512, (5, 4)), c512, 2),  # 18-20: -> 1x1
    )


def video_stream(width: float, size: int) -> nn.Sequential:
    """``netcnnlip``: ``(B, 3, 5, size, size)`` -> ``(B, c512, 1, 1, 1)``; official indices."""
    c96, c256, c512 = (scaled_channels(c, width) for c in (96, 256, 512))
    sides = video_sides(size)
    k1, k3, last = sides["pool1_kernel"], sides["pool3_kernel"], sides["pool3"]
    return nn.Sequential(
        *_conv_block(nn.Conv3d(3, c96, (5, 7, 7), stride=(1, 2, 2)), c96, 3),  # 0-2
        nn.MaxPool3d(kernel_size=(1, k1, k1), stride=(1, 2, 2)),  # 3
        *_conv_block(
            nn.Conv3d(c96, c256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), c256, 3
        ),  # 4-6
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7
        *_conv_block(nn.Conv3d(c256, c256, (1, 3, 3), padding=(0, 1, 1)), c256, 3),  # 8-10
        *_conv_block(nn.Conv3d(c256, c256, (1, 3, 3), padding=(0, 1, 1)), c256, 3),  # 11-13
        *_conv_block(nn.Conv3d(c256, c256, (1, 3, 3), padding=(0, 1, 1)), c256, 3),  # 14-16
        nn.MaxPool3d(kernel_size=(1, k3, k3), stride=(1, 2, 2)),  # 17
        *_conv_block(nn.Conv3d(c256, c512, (1, last, last)), c512, 3),  # 18-20: -> 1x1x1
    )


def embedding_head(width: float, embedding: int) -> nn.Sequential:
    """``netfcaud`` / ``netfclip``: Linear c512 -> BatchNorm1d -> ReLU -> Linear ``embedding``."""
    c512 = scaled_channels(512, width)
    return nn.Sequential(
        nn.Linear(c512, c512), nn.BatchNorm1d(c512), nn.ReLU(inplace=True),
        nn.Linear(c512, embedding),
    )  # fmt: skip


@dataclass
class SyncNetOutput(BaseOutput):
    """What :meth:`SyncNet.forward` returns: ``video`` and ``audio`` embeddings, ``(B, embedding)``
    each (their distance is the sync distance)."""

    video: torch.Tensor = None
    audio: torch.Tensor = None


class SyncNet(nn.Module):
    """The two-stream SyncNet; ``SyncNet()`` is the official architecture.

    Args:
        width: channel scale (official 1.0).
        size: face crop side in pixels (official 224).
        embedding: embedding size (official 1024).
    """

    def __init__(self, width: float = 1.0, size: int = OFFICIAL_SIZE,
                 embedding: int = OFFICIAL_EMBEDDING):  # fmt: skip
        super().__init__()
        self.config = SyncNetConfig(width=float(width), size=int(size), embedding=int(embedding))
        self.netcnnaud = audio_stream(self.config.width)
        self.netfcaud = embedding_head(self.config.width, self.config.embedding)
        self.netcnnlip = video_stream(self.config.width, self.config.size)
        self.netfclip = embedding_head(self.config.width, self.config.embedding)

    @property
    def size(self) -> int:
        return self.config.size

    @classmethod
    def official(cls) -> SyncNet:
        """The architecture of ``syncnet_v2.model``: width 1.0, 224 px crops, 1024-d embeddings."""
        return cls(width=1.0, size=OFFICIAL_SIZE, embedding=OFFICIAL_EMBEDDING)

    @property
    def is_official_architecture(self) -> bool:
        return self.config == SyncNetConfig()

    # ------------------------------------------------------------------ forward
    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Audio embeddings ``(B, embedding)`` of MFCC windows ``(B, 1, 13, 20)``."""
        expected = (1, MFCC_COEFFICIENTS, MFCC_STEPS)
        if mfcc.dim() != 4 or tuple(mfcc.shape[1:]) != expected:
            raise ValueError(f"audio windows must be (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(mfcc.shape)}")  # fmt: skip
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Video embeddings ``(B, embedding)`` of windows ``(B, 3, 5, size, size)``.

        ``frames`` are BGR in 0..255 (what the official code reads with ``cv2.imread``).
        """
        expected = (3, VIDEO_FRAMES, self.size, self.size)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"video windows must be (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(frames.shape)}")  # fmt: skip
        return self.netfclip(self.netcnnlip(frames).flatten(1))

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> SyncNetOutput:
        """The video and audio embeddings, each ``(B, embedding)``."""
        return SyncNetOutput(video=self.forward_video(frames), audio=self.forward_audio(mfcc))

    # ------------------------------------------------------------------ official weights
    @classmethod
    def load_official(cls, path: str | os.PathLike) -> SyncNet:
        """The official SyncNet with the weights of ``syncnet_v2.model`` at ``path``, in eval mode.

        The file is a plain state dict read with ``torch.load(weights_only=True)`` (nothing is
        unpickled beyond tensors). Every key of :meth:`official` must be present with its
        shape, except BatchNorm ``num_batches_tracked`` counters (absent from files saved by
        PyTorch < 0.4; unused in eval mode), and no other key may be present.

        Raises:
            MissingInputError: no file at ``path``.
            ValueError: the file is not a state dict, or its keys or shapes do not match,
                naming the file and the offending keys.
        """
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"{path}: SyncNet weights file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling raises many types for a foreign file
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise ValueError(f"{path}: not a state dict torch.load(weights_only=True) can read "
                             f"({type(error).__name__}: {first_line})") from None  # fmt: skip
        model = cls.official()
        model.load_official_state(state, source=str(path))
        return model.eval()

    def load_official_state(self, state: Mapping, source: str = "state dict") -> None:
        """Load an official-layout state dict strictly (see :meth:`load_official`)."""
        if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise ValueError(
                f"{source}: expected a state dict of tensors, got {type(state).__name__}"
            )
        own = self.state_dict()
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
                 for k in own if k in state and state[k].shape != own[k].shape]  # fmt: skip
        problems = []
        for name, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                           ("wrong shapes", wrong)):  # fmt: skip
            if keys:
                more = f" ... (+{len(keys) - 8})" if len(keys) > 8 else ""
                problems.append(f"{name}: {', '.join(keys[:8])}{more}")
        if problems:
            raise ValueError(f"{source}: not an official SyncNet state dict "
                             f"(width {self.config.width}, size {self.size}, embedding "
                             f"{self.config.embedding}); " + "; ".join(problems))  # fmt: skip
        self.load_state_dict({**own, **state}, strict=True)

    # ------------------------------------------------------------------ our own weights
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``syncnet_config.json`` and ``model.safetensors`` into ``folder``."""
        return save_folder(self, folder, CONFIG_NAME, self.config.to_json())

    @classmethod
    def load(cls, folder: str | os.PathLike, weights: str = WEIGHTS_NAME) -> SyncNet:
        """Rebuild from :meth:`save`'s folder (strict: every key must match), in eval mode."""
        from safetensors.torch import load_model

        folder = Path(folder)
        if not (folder / CONFIG_NAME).exists():
            raise MissingInputError(f"{folder}: no SyncNet here ({CONFIG_NAME} missing)")
        config = SyncNetConfig.from_json((folder / CONFIG_NAME).read_text())
        model = cls(width=config.width, size=config.size, embedding=config.embedding)
        load_model(model, str(folder / weights), strict=True)
        return model.eval()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_official_record(folder: str | os.PathLike, weights: str | os.PathLike) -> dict:
    """Check that ``weights`` load into :meth:`SyncNet.official`; record path and SHA-256.

    Writes ``folder / "official.json"`` = ``{"weights", "sha256", "architecture"}`` and
    returns it. Raises like :meth:`SyncNet.load_official`.
    """
    SyncNet.load_official(weights)
    record = {"weights": str(weights), "sha256": file_sha256(weights),
              "architecture": asdict(SyncNetConfig())}  # fmt: skip
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OFFICIAL_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def load_for_metric(folder: str | os.PathLike) -> tuple[SyncNet, bool]:
    """The SyncNet a ``train_syncnet`` output folder names, and whether it is the official one.

    ``folder/official.json`` (written with official weights): the recorded file, which must
    still have the recorded SHA-256. Otherwise the trained SyncNet saved in ``folder``.
    """
    folder = Path(folder)
    record_path = folder / OFFICIAL_RECORD
    if not record_path.exists():
        return SyncNet.load(folder), False
    record = json.loads(record_path.read_text())
    weights = Path(record["weights"])
    if not weights.is_file():
        raise MissingInputError(f"{record_path}: the recorded SyncNet weights {weights} are gone")
    if file_sha256(weights) != record["sha256"]:
        raise ValueError(f"{weights} changed since {record_path} recorded it (SHA-256 differs); "
                         "rerun train_syncnet")  # fmt: skip
    return SyncNet.load_official(weights), True


__all__ = [
    "CONFIG_NAME", "MFCC_COEFFICIENTS", "MFCC_STEPS", "OFFICIAL_RECORD", "VIDEO_FRAMES",
    "SyncNet", "SyncNetConfig", "audio_stream", "embedding_head", "file_sha256",
    "load_for_metric", "scaled_channels", "video_sides", "video_stream", "write_official_record",
]  # fmt: skip
