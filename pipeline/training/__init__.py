"""Training of the pipeline's networks: data windows and loops."""
