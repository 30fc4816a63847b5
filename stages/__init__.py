"""DVC stage entry points: ``python -m stages.NAME``; each reads its own params section."""
