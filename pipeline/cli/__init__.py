"""The ``paha`` command and its subcommands."""
