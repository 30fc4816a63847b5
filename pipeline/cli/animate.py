"""``paha animate``: one talking video from a reference image and a speech file.

Every input problem ends the command with one line naming the file and the problem, and exit
code 2: an unreadable image, an image without a face, an audio file that is unreadable, not
audio, silent or shorter than one segment, a missing model folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pipeline.config import load_params


def animate_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.builders.features import audio_featurizer
    from pipeline.builders.inference import animator_settings
    from pipeline.errors import InputError
    from pipeline.inference.animator import (
        Animator,
        crop_reference,
        detect_face,
        load_speech,
        read_image,
    )
    from pipeline.inference.domain import reference_check, training_summary
    from pipeline.inference.sampling import segment_starts
    from pipeline.io.audio import SAMPLE_RATE, frame_count
    from pipeline.io.media import write_video
    from pipeline.models.device import resolve_device

    models = Path(args.models)
    try:
        params = load_params(args.params)
        settings = animator_settings(params)
        if args.device:
            device = resolve_device(args.device, name="--device")
        else:
            device = resolve_device(params.runtime.device, name=f"{args.params}: runtime.device")
        out = Path(args.out)
        if out.suffix.lower() != ".mp4":
            raise InputError(f"{out}: the output must be an .mp4 file")
        image = read_image(args.ref)
        box = detect_face(image, args.ref, params.extract.face_min_score)
        classifiers = None
        if args.mode != "none":
            root = Path(args.classifiers) if args.classifiers else models / "classifier"
            classifiers = {k: root / k / "final" for k in ("face", "nonface")}
        univdm = args.univdm or models / "univdm" / "final"
        animator = Animator(univdm, args.vae or models / "vae", settings, classifiers, device)
        wave = load_speech(args.audio, animator.segment_seconds)
        reference, face_box = crop_reference(image, box, settings.size, params.cut.crop,
                                             params.cut.person_scale)  # fmt: skip
        print(training_summary(univdm), file=sys.stderr)
        warning = reference_check(animator.vae, reference).warning()
        if warning:
            print(f"warning: {args.ref}: {warning}", file=sys.stderr)
        # The same per-frame features as `extract` (wav2vec2 loads a model: only here).
        featurizer = audio_featurizer(params.extract, settings.fps)
        features = featurizer(wave, frame_count(len(wave), SAMPLE_RATE, settings.fps))
        total = len(segment_starts(len(features), animator.model.config.frames))
        with tqdm(total=total * settings.steps, desc=f"animate ({args.mode})",
                  unit="step") as bar:  # fmt: skip
            result = animator.generate(reference, face_box, features, args.mode, args.seed,
                                       callback=lambda _: bar.update())  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="paha-animate-") as tmp:
            import soundfile

            wav = Path(tmp) / "speech.wav"
            soundfile.write(wav, wave, SAMPLE_RATE)
            write_video(iter(result.frames), out, settings.fps, audio=wav)
    except InputError as error:  # ConfigError, MediaError, missing models: one line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{out}: {len(result.frames)} frames, {result.segments} segments, "
        f"{result.seconds_per_segment:.2f} s per segment ({args.mode})"
    )
    return 0
