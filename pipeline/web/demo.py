"""``paha demo``: a Gradio page that makes a talking video from a photo and speech.

The page takes a reference photo and a speech file (upload or microphone), the guidance mode
(none / SG / DG), the seed, the DDIM steps and the guidance weights (defaults: the ``infer``
section of the params file, which holds the paper's 1 / 0.1 / 0.25 and rate 0.5), shows a progress
bar over segments and DDIM steps while it samples, and gives the mp4 (H.264 + the speech) in a
player and as a download.

It runs what ``paha animate`` runs (:mod:`pipeline.cli.animate`): the same
:class:`~pipeline.inference.animator.Animator`, reference crop, audio features and video writer,
and every input problem (no face, silent, too short, not audio, a missing model folder) is one
line in the page's status box, not a traceback. :class:`DemoModels` loads the networks once per
process, at the first request; the generate event runs one request at a time and queues the
rest (Gradio's queue), so two visitors never share the models mid-sample.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import itertools
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import load_params
from pipeline.errors import InputError, MissingInputError

MODES = (("none (unguided)", "none"), ("SG: sequential guidance", "sg"),
         ("DG: differential guidance", "dg"))  # fmt: skip
CLASSIFIER_KINDS = ("face", "nonface")


@dataclass(frozen=True)
class ModelPaths:
    """Where the trained models are: the UniVDM and VAE folders, and the folder holding the
    ``face/final`` and ``nonface/final`` classifiers (as ``paha animate`` takes them)."""

    univdm: Path
    vae: Path
    classifiers: Path

    @classmethod
    def under(cls, models: str | os.PathLike, univdm=None, vae=None, classifiers=None):
        """``paha animate``'s defaults: ``MODELS/univdm/final``, ``MODELS/vae``,
        ``MODELS/classifier``, each replaced by its argument when given."""
        models = Path(models)
        return cls(Path(univdm or models / "univdm" / "final"), Path(vae or models / "vae"),
                   Path(classifiers or models / "classifier"))  # fmt: skip

    def classifier_dirs(self) -> dict[str, Path]:
        return {kind: self.classifiers / kind / "final" for kind in CLASSIFIER_KINDS}


@dataclass
class DemoVideo:
    """One generated video: the mp4 ``path`` and its one-line ``summary``."""

    path: Path
    summary: str
    frames: int
    segments: int
    warning: str | None = None  # the reference is far from the training domain (domain.py)


class DemoModels:
    """The params, the :class:`Animator` and the audio featurizer of a demo process.

    Args:
        params_path: the params file (``train_univdm``, ``cut``, ``extract``, ``infer``,
            ``runtime`` as ``paha animate`` reads them).
        paths: the model folders.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; None: ``runtime.device``.

    Raises :class:`~pipeline.errors.InputError` (ConfigError) for a bad params file or device,
    at construction, so ``paha demo`` fails before it serves a page. The models load at the
    first :meth:`animator` call (a missing folder is then an error of that request, and of the
    next one until it exists) and stay loaded; ``loads`` counts the loads.
    """

    def __init__(self, params_path: str | os.PathLike, paths: ModelPaths,
                 device: str | None = None):  # fmt: skip
        from pipeline.builders.inference import animator_settings
        from pipeline.models.device import resolve_device

        self.params = load_params(params_path)
        self.settings = animator_settings(self.params)
        if device:
            self.device = resolve_device(device, name="--device")
        else:
            self.device = resolve_device(self.params.runtime.device,
                                         name=f"{params_path}: runtime.device")  # fmt: skip
        self.paths = paths
        self.loads = 0
        self._lock = threading.Lock()
        self._animator = None
        self._featurizer = None

    def animator(self):
        """The loaded :class:`~pipeline.inference.animator.Animator` (with the classifiers when
        both folders exist; without them only mode ``none`` runs)."""
        from pipeline.inference.animator import Animator

        with self._lock:
            if self._animator is None:
                classifiers = self.paths.classifier_dirs()
                if not all(path.is_dir() for path in classifiers.values()):
                    classifiers = None
                self._animator = Animator(self.paths.univdm, self.paths.vae, self.settings,
                                          classifiers, self.device)  # fmt: skip
                self.loads += 1
            return self._animator

    def featurizer(self):
        """``extract``'s per-frame audio features (wav2vec2 loads its model once, here)."""
        from pipeline.builders.features import audio_featurizer

        with self._lock:
            if self._featurizer is None:
                self._featurizer = audio_featurizer(self.params.extract, self.settings.fps)
            return self._featurizer


def make_video(models: DemoModels, image: np.ndarray | None, audio: str | os.PathLike | None,
               mode: str, seed: int, steps: int, weights: dict[str, float], out: Path,
               progress=None) -> DemoVideo:  # fmt: skip
    """``paha animate`` for one request: ``image`` ``(H, W, 3)`` uint8 RGB, ``audio`` a file.

    Args:
        weights: ``lambda_nonface``, ``lambda_face``, ``lambda_diff``, ``rate`` (Eq. 8-12).
        out: the ``.mp4`` to write.
        progress: ``progress(done, total, segment, segments, step)`` after each DDIM step.

    Raises :class:`InputError` with one line for every input problem.
    """
    import soundfile

    from pipeline.inference.animator import crop_reference, detect_face, load_speech
    from pipeline.inference.domain import reference_check
    from pipeline.inference.sampling import segment_starts
    from pipeline.io.audio import SAMPLE_RATE, frame_count
    from pipeline.io.media import write_video

    if image is None:
        raise InputError("no reference image: upload a photo of a person")
    if audio is None:
        raise InputError("no speech: upload an audio file or record one")
    if mode not in {value for _, value in MODES}:
        raise InputError(f"mode {mode!r} is not one of none, sg, dg")
    if any(weights[k] is None for k in weights):  # a number field left empty
        raise InputError(f"fill in every guidance weight ({', '.join(sorted(weights))})")
    if int(steps) < 1:
        raise InputError(f"DDIM steps must be at least 1, got {steps}")
    if not 0.0 <= float(weights["rate"]) <= 1.0:
        raise InputError(f"guidance rate must be in [0, 1], got {weights['rate']}")
    if any(float(weights[k]) < 0 for k in ("lambda_nonface", "lambda_face", "lambda_diff")):
        raise InputError("guidance weights must be >= 0")
    params = models.params
    box = detect_face(np.ascontiguousarray(image[..., :3]), "reference image",
                      params.extract.face_min_score)  # fmt: skip
    if mode != "none":
        missing = [p for p in models.paths.classifier_dirs().values() if not p.is_dir()]
        if missing:
            raise MissingInputError(f"{missing[0]}: model folder not found (run `dvc repro` or "
                                    "give the path); mode none needs no classifier")  # fmt: skip
    loaded = models.animator()
    # The request's steps and weights on a shallow copy: the networks are shared, not changed.
    animator = copy.copy(loaded)
    guidance = dataclasses.replace(loaded.settings.guidance,
                                   **{k: float(v) for k, v in weights.items()})  # fmt: skip
    animator.settings = dataclasses.replace(loaded.settings, steps=int(steps), guidance=guidance)
    settings = animator.settings
    wave = load_speech(audio, animator.segment_seconds)
    reference, face_box = crop_reference(image[..., :3], box, settings.size, params.cut.crop,
                                         params.cut.person_scale)  # fmt: skip
    warning = reference_check(animator.vae, reference).warning()
    features = models.featurizer()(wave, frame_count(len(wave), SAMPLE_RATE, settings.fps))
    segments = len(segment_starts(len(features), animator.model.config.frames))
    total = segments * settings.steps
    done = itertools.count(1)

    def step(_):
        if progress is not None:
            n = next(done)
            progress(n, total, (n - 1) // settings.steps + 1, segments,
                     (n - 1) % settings.steps + 1)  # fmt: skip

    result = animator.generate(reference, face_box, features, mode, int(seed), callback=step)
    with tempfile.TemporaryDirectory(prefix="paha-demo-wav-") as tmp:
        wav = Path(tmp) / "speech.wav"
        soundfile.write(wav, wave, SAMPLE_RATE)
        write_video(iter(result.frames), out, settings.fps, audio=wav)
    n_frames = len(result.frames)
    summary = (f"{out.name}: {n_frames} frames ({n_frames / settings.fps:.2f} s), "
               f"{result.segments} segments, {result.seconds_per_segment:.2f} s per segment, "
               f"mode {mode}, seed {int(seed)}, {settings.steps} DDIM steps")  # fmt: skip
    if warning:
        summary = f"**warning:** {warning}\n\n{summary}"
    return DemoVideo(out, summary, n_frames, result.segments, warning)


def _short_paths(message: str, audio) -> str:
    """An error about Gradio's upload copy names the file as the person uploaded it."""
    return message.replace(str(audio), Path(str(audio)).name) if audio else message


def build_demo(models: DemoModels):
    """The Gradio :class:`gradio.Blocks` of the demo (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from pipeline.inference.domain import training_summary
    from pipeline.web.examples import example_files

    infer = models.params.infer
    outputs = Path(tempfile.mkdtemp(prefix="paha-demo-"))
    atexit.register(shutil.rmtree, outputs, True)
    counter = itertools.count(1)

    def generate(image, audio, mode, seed, steps, lambda_nonface, lambda_face, lambda_diff,
                 rate, progress=gr.Progress()):  # noqa: B008 (Gradio's protocol)  # fmt: skip
        def report(done, total, segment, segments, step):
            progress((done, total), desc=f"segment {segment}/{segments}, DDIM step "
                     f"{step}/{int(steps)}", unit="steps")  # fmt: skip

        out = outputs / f"paha-{next(counter):04d}-{mode}-seed{int(seed or 0)}.mp4"
        weights = {"lambda_nonface": lambda_nonface, "lambda_face": lambda_face,
                   "lambda_diff": lambda_diff, "rate": rate}  # fmt: skip
        try:
            video = make_video(models, image, audio, mode, int(seed or 0), int(steps or 1),
                               weights, out, report)  # fmt: skip
        except InputError as error:  # ConfigError, MediaError, missing models: one line
            return None, None, f"**error:** {_short_paths(str(error), audio)}"
        return str(video.path), str(video.path), video.summary

    settings = models.settings
    with gr.Blocks(title="PAHA demo", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:  # fmt: skip
        gr.Markdown(
            "# PAHA: a talking video from a photo and speech\n"
            f"One frame per 1/{settings.fps:g} s of speech, {settings.size} x {settings.size} "
            "pixels, generated in segments that each continue from the last frame of the one "
            "before. SG and DG steer the first part of the DDIM steps with the face and "
            "non-face sync classifiers (PCE); *none* samples without them.\n\n"
            f"{training_summary(models.paths.univdm)}. It animates people like the ones it "
            "was trained on; a photo far from them gets a warning with its video."
        )  # fmt: skip
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="reference photo (a person, face visible)", type="numpy",
                                 sources=["upload", "clipboard"], elem_id="reference")  # fmt: skip
                audio = gr.Audio(label="speech (upload or record)", type="filepath",
                                 sources=["upload", "microphone"], elem_id="speech")  # fmt: skip
                mode = gr.Radio(MODES, value="dg", label="guidance", elem_id="mode")
                with gr.Row():
                    seed = gr.Number(value=infer.seed, precision=0, label="seed", elem_id="seed")
                    steps = gr.Slider(1, 100, value=infer.steps, step=1, elem_id="steps",
                                      label="DDIM steps per segment (paper 30)")  # fmt: skip
                with gr.Accordion("guidance weights (paper: 1, 0.1, 0.25, first 50 %)",
                                  open=False):  # fmt: skip
                    nonface = gr.Number(value=infer.lambda_nonface, minimum=0,
                                        label="λ non-face (paper 1)")  # fmt: skip
                    face = gr.Number(value=infer.lambda_face, minimum=0, label="λ face (paper 0.1)")
                    diff = gr.Number(value=infer.lambda_diff, minimum=0,
                                     label="λ diff, DG only (paper 0.25)")  # fmt: skip
                    rate = gr.Slider(0, 1, value=infer.guidance_rate, step=0.05,
                                     label="guided share of the steps (paper 0.5)")  # fmt: skip
                button = gr.Button("Generate video", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="video", format=None, elem_id="video", autoplay=False)
                download = gr.File(label="download the mp4", elem_id="download")
                status = gr.Markdown("", elem_id="status")
        files = example_files()
        gr.Examples([[str(files["image"]), str(files[language])] for language in ("en", "zh")],
                    inputs=[image, audio], label="examples: a sample-corpus speaker, espeak-ng "
                    "speech in English and Mandarin", cache_examples=False)  # fmt: skip
        button.click(generate, [image, audio, mode, seed, steps, nonface, face, diff, rate],
                     [video, download, status], concurrency_limit=1,
                     api_name="generate")  # fmt: skip
    return demo


def launch(demo, host: str, port: int, block: bool = True):
    """Serve ``demo`` on ``host:port``, one generation at a time, others queued.

    ``block=False`` returns once the server is up (tests); Gradio's own fonts are replaced by
    the system's, so the page loads nothing from outside this server.
    """
    import gradio as gr

    from pipeline.web.examples import example_folder

    theme = gr.themes.Default(font=["system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # fmt: skip
    demo.queue(default_concurrency_limit=1, max_size=32)
    served = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                         ssr_mode=False, theme=theme, allowed_paths=[str(example_folder())],
                         footer_links=[], quiet=True, mcp_server=False)  # fmt: skip
    if block:
        print(f"paha demo: {served[1]}  (Ctrl+C to stop)", flush=True)
        demo.block_thread()  # until Ctrl+C, then closes the server
    return served
