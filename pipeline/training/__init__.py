"""Training of the pipeline's networks: one loop (``loop``), its checkpoints
(``checkpoint_store``, ``resume``) and curves (``live_log``), and per network a trainer with its
data (UniVDM, the PCE classifiers, the VAE, the gesture autoencoder, the SyncNet)."""
