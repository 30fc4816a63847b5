"""The ``paha`` command: run a pipeline stage or check a params file.

paha stage cut            # same as `python -m stages.cut` (what `dvc repro` calls)
paha params-check [FILE]  # validate params.yaml (or FILE) and print the effective values
paha animate --ref IMAGE --audio AUDIO --out OUT.mp4 [--mode none|sg|dg] [--seed N]
paha ablate [--seeds 0 1 2] [--variants full no_par ...]   # Table 3 over seeds
paha demo [--port 7860]    # the animate page in a browser (needs the `web` extra)
paha review [--port 7861]  # keep / reject curated clips into data/overrides.csv
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pipeline.config import load_params
from pipeline.errors import ConfigError

STAGES = (
    "corpus",
    "cut",
    "curate",
    "extract",
    "train_vae",
    "train_univdm",
    "negatives",
    "train_classifier",
    "infer",
    "train_gesture_ae",
    "train_syncnet",
    "evaluate",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paha", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stage = commands.add_parser("stage", help="run one pipeline stage")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the stage")
    check = commands.add_parser("params-check", help="validate a params file")
    check.add_argument("file", nargs="?", default="params.yaml")
    figure = commands.add_parser("par-figure", help="PAR areas and mask of a clip's frame")
    figure.add_argument("clip_id")
    figure.add_argument("--frame", type=int, default=0)
    figure.add_argument("--out", default=None, help="PNG path (default: par_CLIP_FRAME.png)")
    figure.add_argument("--params", default="params.yaml")
    figure.add_argument("--features", default="data/features")
    figure.add_argument("--clips", default="data/curated/clips.parquet")
    animate = commands.add_parser("animate", help="make a talking video from an image and speech")
    animate.add_argument("--ref", required=True, help="reference image (a person, face visible)")
    animate.add_argument("--audio", required=True, help="speech, any format and sample rate")
    animate.add_argument("--out", required=True, help="output .mp4 (H.264 + the audio)")
    animate.add_argument("--mode", choices=("none", "sg", "dg"), default="dg")
    animate.add_argument("--seed", type=int, default=0)
    add_model_arguments(animate)
    demo = commands.add_parser("demo", help="the animate page in a browser (Gradio)")
    add_model_arguments(demo)
    add_server_arguments(demo, 7860)
    review = commands.add_parser("review", help="a page to keep or reject curated clips")
    review.add_argument("--params", default="params.yaml", help="its curate section: the "
                        "thresholds and the overrides file")  # fmt: skip
    review.add_argument("--curated", default="data/curated", help="curate's output folder")
    review.add_argument("--overrides", help="default: curate.overrides of --params")
    add_server_arguments(review, 7861)
    flow = commands.add_parser("flow", help="run the DAG as Prefect flows (cached, sharded)")
    flow.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    flow.add_argument("--stage", help="run only this stage (its inputs must exist)")
    flow.add_argument("--root", default=".", help="the repository (dvc.yaml, params.yaml)")
    flow.add_argument("--shards", type=int, default=1, help="shards of cut, curate, extract, "
                      "negatives and infer (one task each, then a merge)")  # fmt: skip
    flow.add_argument("--devices", help="GPU ids for the shards, e.g. 0,1 (CUDA_VISIBLE_DEVICES)")
    flow.add_argument("--gpu-slots", type=int, default=1, help="size of the `gpu` limit")
    flow.add_argument("--workers", type=int, default=2, help="local process pool size")
    flow.add_argument("--dask", help="address of a Dask scheduler (prefect-dask task runner)")
    flow.add_argument("--pool-deployment", help="run each command as a flow run of this "
                      "deployment of paha-command (its work pool's workers run them)")  # fmt: skip
    flow.add_argument("--storage", help="where task results persist (default: .prefect-cache)")
    flow.add_argument("--no-commit", action="store_true", help="skip `dvc commit` afterwards")
    flow.add_argument("--push", action="store_true", help="`dvc push` the outputs to the "
                      "default DVC remote afterwards (`dvc remote add -d`)")  # fmt: skip
    ablate = commands.add_parser("ablate", help="the paper's Table 3 over seeds (a scratch "
                                 "clone, dvc repro per cell)")  # fmt: skip
    ablate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ablate.add_argument("--variants", nargs="+", help="Table 3 rows: full no_par "
                        "no_nonface_guidance no_face_guidance no_par_no_guidance "
                        "no_augmentation (default: all)")  # fmt: skip
    ablate.add_argument("--repo", default=".", help="the repository (its HEAD is run)")
    ablate.add_argument("--workdir", help="scratch clone, baselines and logs "
                        "(default: REPO/.dvc/tmp/ablation)")  # fmt: skip
    ablate.add_argument("--out", help="default: REPO/data/metrics/ablation.json")
    ablate.add_argument("--html", help="default: OUT with .html")
    export = commands.add_parser("export", help="write the curated corpus as a dataset release "
                                 "(clips, poses, faces, split, datasheet README.md)")  # fmt: skip
    export.add_argument("--out", required=True, help="folder to write (replaced when it exists)")
    export.add_argument("--params", default="params.yaml", help="the run's params (%(default)s)")
    export.add_argument("--root", default=".", help="the repository whose run is exported")
    args = parser.parse_args(argv)

    if args.command == "export":
        from pipeline.cli.export import export_command

        return export_command(args)
    if args.command == "ablate":
        from pipeline.cli.ablate import ablate_command

        return ablate_command(args)
    if args.command == "flow":
        from pipeline.cli.flow import flow_command

        return flow_command(args)

    if args.command == "animate":
        from pipeline.cli.animate import animate_command

        return animate_command(args)
    if args.command == "demo":
        return demo_command(args)
    if args.command == "review":
        return review_command(args)
    if args.command == "par-figure":
        return par_figure_command(args)
    if args.command == "stage":
        module = importlib.import_module(f"stages.{args.name}")
        return module.run_stage(module.main, module.parser(), args.args)
    try:
        params = load_params(args.file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(params.model_dump(), indent=2))
    return 0


def add_model_arguments(command: argparse.ArgumentParser) -> None:
    """The params file, model folders and device of ``animate`` and ``demo``."""
    command.add_argument("--params", default="params.yaml")
    command.add_argument("--models", default="data/models", help="folder of the trained models")
    command.add_argument("--univdm", help="UniVDM folder (default: MODELS/univdm/final)")
    command.add_argument("--vae", help="VAE folder (default: MODELS/vae)")
    command.add_argument("--classifiers", help="folder with face/ and nonface/ classifier "
                         "folders (default: MODELS/classifier)")  # fmt: skip
    command.add_argument("--device", help="where the networks run: auto, cpu, cuda or cuda:N "
                         "(default: runtime.device of --params)")  # fmt: skip


def add_server_arguments(command: argparse.ArgumentParser, port: int) -> None:
    """Where a page is served (loopback by default: the pages have no login)."""
    command.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                         "127.0.0.1; 0.0.0.0 serves other machines)")  # fmt: skip
    command.add_argument("--port", type=int, default=port)


def demo_command(args: argparse.Namespace) -> int:
    """Serve the Gradio demo page until interrupted."""
    from pipeline.errors import InputError
    from pipeline.web.demo import DemoModels, ModelPaths, build_demo, launch

    try:
        import gradio  # noqa: F401 (the optional `web` extra)
    except ModuleNotFoundError:
        print("error: paha demo needs Gradio: pip install -e '.[web]'", file=sys.stderr)
        return 2
    try:
        paths = ModelPaths.under(args.models, args.univdm, args.vae, args.classifiers)
        models = DemoModels(args.params, paths, args.device)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        launch(build_demo(models), args.host, args.port)
    except OSError as error:  # e.g. the port is taken
        print(f"error: paha demo on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    return 0


def review_command(args: argparse.Namespace) -> int:
    """Serve the curation review page until interrupted."""
    from pipeline.errors import InputError
    from pipeline.web.review import review_app, serve

    try:
        params = load_params(args.params).curate
        app = review_app(args.curated, args.overrides or params.overrides, params)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    serve(app, args.host, args.port)
    return 0


def par_figure_command(args: argparse.Namespace) -> int:
    """Write the Fig. 3-style PAR figure of one frame of an extracted clip."""
    import numpy as np

    from pipeline.builders.par import par_masks
    from pipeline.errors import InputError
    from pipeline.evaluation.par_figure import par_figure
    from pipeline.io import tables
    from pipeline.io.media import read_frames
    from pipeline.keypoints import N_KEYPOINTS

    try:
        params = load_params(args.params)
        clips = tables.read_table(args.clips, tables.CURATED).set_index("clip_id")
        pose = tables.read_table(f"{args.features}/pose.parquet", tables.POSE)
        if args.clip_id not in clips.index:
            raise InputError(f"{args.clips}: no clip {args.clip_id!r}")
        rows = pose[(pose["clip_id"] == args.clip_id) & (pose["frame"] == args.frame)]
        if rows.empty:
            raise InputError(f"{args.features}/pose.parquet: no pose for {args.clip_id} "
                             f"frame {args.frame}")  # fmt: skip
        keypoints = np.asarray(rows["keypoints"].iloc[0], np.float32).reshape(N_KEYPOINTS, 3)
        frame = read_frames(clips.at[args.clip_id, "path"], [args.frame])
        if len(frame) == 0:
            raise InputError(f"{args.clip_id}: no frame {args.frame}")
        out = args.out or f"par_{args.clip_id}_{args.frame}.png"
        par_figure(frame[0], keypoints, par_masks(params.train_univdm.par), out)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
