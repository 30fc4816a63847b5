"""The paper's Table 3 (core components) at sample scale, over seeds: ``paha ablate``.

**The grid.** :data:`VARIANTS` names each row of Table 3 by the params it changes (``full`` is
params.yaml as committed): ``no_par`` (``train_univdm.par.enabled: false``),
``no_nonface_guidance`` (``infer.lambda_nonface: 0``), ``no_face_guidance``
(``infer.lambda_face: 0``), ``no_par_no_guidance`` (all three) and ``no_augmentation``
(``negatives.augment: false``). Every run computes the unguided, SG and DG videos
(``infer@none``, ``infer@sg``, ``infer@dg``), so DG vs SG comes from each run.

**A seed** sets every key of :data:`SEED_KEYS` to the same value: the randomness of the method
under test (UniVDM training, the PCE negatives and their held-out split, both classifiers,
inference noise). The data stays fixed (``corpus.seed``, ``curate.split_seed``), so does the VAE
(``train_vae.seed``: it stands in for the paper's pretrained, frozen Stable Diffusion VAE, which
no Table 3 row retrains) and so do the measuring instruments (``train_gesture_ae.seed``,
``train_syncnet.seed``, ``evaluate.div_seed``): every cell is judged by the same FGD/Div.
autoencoder and SyncNet, so a paired difference between two variants is the method's, not the
ruler's.

**A replicate** is a (seed, machine) pair: each cell records :func:`machine_fingerprint` (the
processor, the SIMD numpy and torch dispatch to, the GPU). One seed on two machines gives two
runs that differ like two seeds do (numpy's vectorised sin/cos differ in the last bit between
AVX2 and AVX-512, so do the sample corpus's keypoints, and training diverges from there; so
does the SyncNet every Sync figure is read with), so cells are paired only within one machine,
and one seed may be run once per machine. Cells written before machines were recorded have
none and pair only with each other.

**How a cell runs.** :func:`run_ablation` makes one scratch ``git clone`` of the repository's
HEAD under ``workdir`` (uncommitted edits are not part of the grid; the commit is recorded per
cell) and points its DVC cache at the original's (``cache.dir`` in its ``.dvc/config.local``),
so every output and DVC's run-cache are shared and the original's workspace is never touched.
Each cell starts from a *baseline*: the run of the same seed it differs least from
(:data:`STARTS_FROM`: ``no_par_no_guidance`` from ``no_par``, which retrained UniVDM without PAR;
every other variant from ``full``) when that has finished (else
the original's ``dvc.lock`` and its uncached outputs: metrics, timings, DVCLive curves),
restored with ``dvc checkout --force``; then params.yaml gets the cell's overrides and ``dvc repro``
reruns only what they reach (``no_face_guidance`` reruns ``infer`` and ``evaluate``). Training
stages have persistent outputs, which DVC's run-cache never restores: starting from the seed's
``full`` baseline is what keeps them from retraining. A failed ``dvc repro`` stops the grid
with its log's last lines (the full log stays under ``workdir``).

**Resume.** ``ablation.json`` is rewritten (atomically) after every cell, with the summary and
the verdicts so far. A rerun keeps the cells already in the file and runs only those missing;
a cell whose recorded overrides differ from the grid's (the variant was redefined) runs again.
Cells of other commits are kept (``commits`` lists every commit in the file); move the file
away to start over.

**Aggregation.** Per variant, infer mode (or classifier kind) and metric: mean, sample standard
deviation (``ddof=1``; None for one seed) and the number of seeds with a value. Each paper
direction (:data:`DIRECTIONS`) is judged on the per-seed paired difference
``delta_s = metric(with the component) - metric(without)``, over the seeds where both cells
have a value; see :data:`VERDICT_RULE`. Which way is better: :func:`better_sign`.
"""
