"""Memory plan of UniVDM training per GPU, from shapes alone: no GPU, no weights.

    python -m benchmarks.memory_plan --profile paper --gpu-gib 80 [--processes 8] [--out F.json]

The network of a profile (``params/paper.yaml``: SVD's UNet layout, 1.58 B parameters) is built
on PyTorch's ``meta`` device, where tensors have shapes and dtypes but no storage, and one
training forward pass of ``micro_batch`` windows runs there. Per card:

- **weights, gradients, AdamW, EMA**: counted from the trainable parameters. Mixed precision
  through ``accelerate`` keeps fp32 master weights and fp32 gradients (4 + 4 bytes per
  parameter), AdamW two fp32 moments (8), the EMA an fp32 copy on every rank (4, with
  ``ema_decay``). DDP's all-reduce buckets cost nothing more: the project's accelerator
  (:func:`~pipeline.models.device.make_accelerator`) makes the gradients views into them
  (``gradient_as_bucket_view``; off, they would be one more fp32 copy);
- **frozen networks**: the VAE and the CLIP image encoder held on every card in fp32 (their
  sizes from the ``config.json`` of the folders the profile names, or Stable Diffusion's VAE and
  CLIP ViT-H/14 when the folders are absent);
- **activations**: the bytes autograd saves for the backward pass during the forward pass
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once), in the training
  precision. Attention is measured as a fused (flash / memory-efficient) kernel saves it:
  ``q, k, v``, the output and one fp32 log-sum-exp per query row, not the ``N x N`` matrix.
  With gradient checkpointing, diffusers recomputes each checkpointed block in the backward
  pass: what it saves is the block inputs, plus one block's activations at a time (the largest
  is added);
- **workspace**: a fixed allowance for the CUDA context, cuBLAS / cuDNN workspaces and allocator
  fragmentation (``--workspace-gib``, 6 GiB by default), since none of them can be derived from
  shapes.

What it cannot see: kernels' temporaries and the allocator's exact behaviour. Read the totals as
a plan to check once on the card (``benchmarks/gpu_check.sh``), not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.config import Params, load_params
from pipeline.training.loop import batch_split

GIB = 2**30
PROFILES = {"paper": "params/paper.yaml", "sample": "params.yaml"}
# Used when a profile's weight folder is absent here: Stable Diffusion's VAE (SD 1.x / 2.x, SVD's
# encoder half) and the CLIP ViT-H/14 image encoder of SD 2.1 unCLIP and SVD.
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4}
CLIP_VIT_H = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
              "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
              "projection_dim": 1024}  # fmt: skip
WAV2VEC2_BASE_DIM = 768  # wav2vec2-base hidden size: the audio features' width


class _FusedAttention(torch.autograd.Function):
    """Shapes of a fused attention kernel: output like ``q``, saves ``q, k, v``, the output and
    a ``(B, H, N)`` fp32 log-sum-exp (what flash / memory-efficient attention keep)."""

    @staticmethod
    def forward(ctx, query, key, value):
        out = torch.empty_like(query)
        lse = torch.empty(query.shape[:-1], dtype=torch.float32, device=query.device)
        ctx.save_for_backward(query, key, value, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - shapes only, never differentiated
        raise NotImplementedError


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                **kwargs):  # fmt: skip
    return _FusedAttention.apply(query, key, value)


@contextlib.contextmanager
def fused_attention():
    """``F.scaled_dot_product_attention`` as a fused kernel's shapes (module docstring)."""
    real = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = real


class SavedBytes:
    """Bytes autograd saves (a ``saved_tensors_hooks`` pack hook), each storage once."""

    def __init__(self):
        self.storages: set[int] = set()
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in self.storages:  # the graph keeps it alive: no address reuse
            self.storages.add(storage._cdata)
            self.total += storage.nbytes()
        return tensor


def _tensor_bytes(values) -> int:
    return sum(v.untyped_storage().nbytes() for v in values if isinstance(v, torch.Tensor))


def activation_gib(model: torch.nn.Module, inputs: dict,
                   checkpointed: list[torch.nn.Module] | None = None) -> float:  # fmt: skip
    """Saved activations of one forward pass of ``model(**inputs)`` on the meta device, GiB
    (module docstring), with the ``checkpointed`` modules recomputed in the backward pass.

    Tensors of ``model``'s fp32 parameters are not activations and are left out; weights in
    another dtype are counted: they stand for the copies autocast makes and keeps for the
    backward pass in mixed precision.
    """
    saved = SavedBytes()
    saved.storages.update(p.untyped_storage()._cdata for p in model.parameters()
                          if p.dtype == torch.float32)  # fmt: skip
    spans: list[tuple[int, int, int]] = []  # (saved before, input bytes, saved after)
    hooks = []
    for block in checkpointed or []:

        def before(module, args, kwargs):
            spans.append((saved.total, _tensor_bytes([*args, *kwargs.values()]), -1))

        def after(module, args, kwargs, output):
            start, input_bytes, _ = spans.pop()
            spans.insert(0, (start, input_bytes, saved.total))  # finished spans at the front

        hooks.append(block.register_forward_pre_hook(before, with_kwargs=True))
        hooks.append(block.register_forward_hook(after, with_kwargs=True))
    try:
        with fused_attention(), torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    # A checkpointed block keeps its inputs instead of its activations; in the backward pass
    # one block's activations exist at a time (recomputed), the largest at worst.
    own = sum(end - start for start, _, end in spans)
    kept = sum(input_bytes for _, input_bytes, _ in spans)
    largest = max((end - start for start, _, end in spans), default=0)
    return (saved.total - own + kept + largest) / GIB


@dataclass
class PlanRow:
    """One layout: per-device micro-batch, checkpointing, and the GiB per card."""

    micro_batch: int
    accumulation: int
    gradient_checkpointing: bool
    weights: float
    gradients: float
    optimizer: float
    ema: float
    frozen: float
    activations: float
    workspace: float
    total: float
    fits: bool


def _folder_config(path: str | None, subfolder: str = "") -> dict:
    if not path:
        return {}
    folder = Path(path)
    for candidate in (folder / "config.json", folder / subfolder / "config.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}


def frozen_parameters(params: Params) -> dict[str, int]:
    """Parameter counts of the frozen networks held on every card during UniVDM training."""
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vae = params.train_vae
    counts = {}
    with torch.device("meta"):
        config = _folder_config(vae.pretrained, "vae")
        if config:
            cls = (AutoencoderKLTemporalDecoder
                   if config.get("_class_name") == "AutoencoderKLTemporalDecoder"
                   else AutoencoderKL)  # fmt: skip
            model = cls.from_config(config)
        elif vae.pretrained:
            model = AutoencoderKL(**SD_VAE, down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4)  # fmt: skip
        else:
            model = AutoencoderKL(
                block_out_channels=tuple(vae.block_out_channels),
                layers_per_block=vae.layers_per_block, latent_channels=vae.latent_channels,
                norm_num_groups=vae.norm_num_groups,
                down_block_types=("DownEncoderBlock2D",) * len(vae.block_out_channels),
                up_block_types=("UpDecoderBlock2D",) * len(vae.block_out_channels),
            )  # fmt: skip
        counts["vae"] = sum(p.numel() for p in model.parameters())
        if params.train_univdm.clip:
            config = _folder_config(params.train_univdm.clip) or CLIP_VIT_H
            clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**{
                k: v for k, v in config.items() if k in CLIPVisionConfig().to_dict()}))  # fmt: skip
            counts["clip"] = sum(p.numel() for p in clip.parameters())
    return counts


def univdm_on_meta(params: Params, audio_dim: int, dtype: torch.dtype):
    """The profile's UniVDM with meta tensors, in ``dtype``; and the CLIP embedding size."""
    from pipeline.models.univdm import UniVDM
    from pipeline.training.univdm_trainer import univdm_config

    train = params.train_univdm
    clip_dim = None
    if train.clip:
        clip_dim = (_folder_config(train.clip) or CLIP_VIT_H).get("projection_dim", 1024)
    vae = params.train_vae
    levels = len(SD_VAE["block_out_channels"] if vae.pretrained else vae.block_out_channels)
    latent_channels = SD_VAE["latent_channels"] if vae.pretrained else vae.latent_channels
    config = univdm_config(train, params.cut.fps, latent_channels, 2 ** (levels - 1), audio_dim,
                           clip_dim, 0.18215)  # fmt: skip
    with torch.device("meta"):
        model = UniVDM(config)
    # Some diffusers layers make CPU tensors whatever the default device (torch.Tensor([...])).
    return model.to(device="meta", dtype=dtype).train(), config


def training_inputs(config, batch: int, dtype: torch.dtype) -> dict:
    """One micro-batch of :meth:`UniVDM.forward`'s inputs on the meta device."""
    shape = (batch, config.frames, config.latent_channels, config.latent_size, config.latent_size)
    with torch.device("meta"):
        inputs = {
            "noisy": torch.empty(shape, dtype=dtype),
            "timesteps": torch.zeros(batch, dtype=torch.long),
            "reference": torch.empty(shape[:1] + shape[2:], dtype=dtype),
            "audio": torch.empty(
                batch, config.frames, config.window, config.audio_dim, dtype=dtype
            ),  # fmt: skip
            "condition": torch.empty(shape, dtype=dtype),
            "condition_mask": torch.empty(shape[:2], dtype=dtype),
        }
        if config.clip_dim:
            inputs["image_embeds"] = torch.empty(batch, config.clip_dim, dtype=dtype)
    return inputs


def memory_plan(params: Params, processes: int, gpu_gib: float, workspace_gib: float = 6.0,
                micro_batches: tuple[int, ...] = (1, 2, 4, 8),
                audio_dim: int = WAV2VEC2_BASE_DIM) -> dict:  # fmt: skip
    """Rows of :class:`PlanRow` for every micro-batch that splits the global batch, with and
    without gradient checkpointing, plus the chosen layout (the largest micro-batch that fits,
    checkpointing only if needed)."""
    train = params.train_univdm
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[train.precision]
    model, config = univdm_on_meta(params, audio_dim, dtype)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = frozen_parameters(params)
    fixed = {
        "weights": 4 * n / GIB, "gradients": 4 * n / GIB, "optimizer": 8 * n / GIB,
        "ema": 4 * n / GIB if train.ema_decay else 0.0,
        "frozen": 4 * sum(frozen.values()) / GIB,
    }  # fmt: skip
    rows = []
    for micro in micro_batches:
        try:
            split = batch_split("train_univdm", train.batch_size, processes, micro)
        except ValueError:
            continue
        for checkpointing in (False, True):
            # The forward runs plain; checkpointing is accounted for from the blocks' figures.
            blocks = model.checkpointed_blocks() if checkpointing else None
            activations = activation_gib(model, training_inputs(config, micro, dtype), blocks)
            total = sum(fixed.values()) + activations + workspace_gib
            rows.append(PlanRow(micro, split.accumulation, checkpointing, **{
                k: round(v, 2) for k, v in fixed.items()}, activations=round(activations, 2),
                workspace=workspace_gib, total=round(total, 2), fits=total <= gpu_gib))  # fmt: skip
    fitting = [r for r in rows if r.fits]
    # Fewest accumulated micro-batches, then no recomputation (faster) when both fit.
    chosen = min(fitting, key=lambda r: (r.accumulation, r.gradient_checkpointing), default=None)
    return {
        "trainable_parameters": n, "frozen_parameters": frozen, "processes": processes,
        "global_batch": train.batch_size, "frames": config.frames,
        "latent": [config.latent_channels, config.latent_size, config.latent_size],
        "precision": train.precision, "gpu_gib": gpu_gib, "rows": [asdict(r) for r in rows],
        "chosen": asdict(chosen) if chosen else None,
        "profile": {"micro_batch_size": train.micro_batch_size,
                    "gradient_checkpointing": train.gradient_checkpointing},
    }  # fmt: skip


def profile_fits(plan: dict) -> bool:
    """Whether the profile's own layout (its micro-batch, its checkpointing) fits the card."""
    profile = plan["profile"]
    micro = profile["micro_batch_size"] or plan["global_batch"] // plan["processes"]
    return any(r["fits"] for r in plan["rows"] if r["micro_batch"] == micro
               and r["gradient_checkpointing"] == profile["gradient_checkpointing"])  # fmt: skip


def markdown_table(plan: dict) -> str:
    """The plan as a Markdown table (GiB per card)."""
    head = (
        "| micro-batch | accumulation | checkpointing | weights + grads + AdamW | EMA "
        "| frozen | activations | workspace | total | fits |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in plan["rows"]:
        state = r["weights"] + r["gradients"] + r["optimizer"]
        lines.append(f"| {r['micro_batch']} | {r['accumulation']} | "
                     f"{'yes' if r['gradient_checkpointing'] else 'no'} | {state:.1f} | "
                     f"{r['ema']:.1f} | {r['frozen']:.1f} | "
                     f"{r['activations']:.1f} | {r['workspace']:.0f} | {r['total']:.1f} | "
                     f"{'yes' if r['fits'] else 'no'} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", help="paper | sample | a params file")
    parser.add_argument("--gpu-gib", type=float, default=80.0)
    parser.add_argument("--processes", type=int, default=None,
                        help="data-parallel processes (default: the global batch, one window "
                        "per card, as the paper's 8 windows on 8 GPUs)")  # fmt: skip
    parser.add_argument("--workspace-gib", type=float, default=6.0)
    parser.add_argument("--out", default=None, help="JSON of the plan")
    args = parser.parse_args(argv)
    params = load_params(PROFILES.get(args.profile, args.profile))
    processes = args.processes or params.train_univdm.batch_size
    plan = memory_plan(params, processes, args.gpu_gib, args.workspace_gib)
    print(f"UniVDM: {plan['trainable_parameters'] / 1e9:.3f} B trainable parameters; frozen "
          f"{ {k: round(v / 1e9, 3) for k, v in plan['frozen_parameters'].items()} } B; global "
          f"batch {plan['global_batch']} over {processes} processes; {plan['frames']} frames of "
          f"{plan['latent']} latents; {plan['precision']}; GiB per card:\n")  # fmt: skip
    print(markdown_table(plan))
    chosen = plan["chosen"]
    print("\nchosen:", "nothing fits" if chosen is None else
          f"micro_batch_size {chosen['micro_batch']}, accumulation {chosen['accumulation']}, "
          f"gradient_checkpointing {chosen['gradient_checkpointing']} "
          f"({chosen['total']:.1f} of {args.gpu_gib:g} GiB)")  # fmt: skip
    print("the profile's own layout fits:", profile_fits(plan))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(plan, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
