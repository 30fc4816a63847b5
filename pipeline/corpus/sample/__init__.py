"""The built-in offline sample corpus: rendered speakers (figure, motion), espeak-ng speech."""
