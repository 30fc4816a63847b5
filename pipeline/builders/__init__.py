"""Params -> objects: where a params file becomes the library's arguments.

Library modules take plain typed arguments (or their own typed settings); the stages and the
``paha`` commands turn a :class:`~pipeline.config.Params` into those through these builders, so
a setting is read in one place and every consumer builds the same object from it (``extract``
and ``paha animate`` compute the same audio features; ``infer`` and ``paha animate`` sample
with the same settings; every stage that noises latents uses the training schedule). One module
per area, so that a stage's code dependencies (``dvc.yaml``) hold only the builders it uses.
"""
