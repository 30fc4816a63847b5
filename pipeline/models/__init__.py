"""Networks of the pipeline: UniVDM, its audio attention, the VAE, the sync classifiers."""
