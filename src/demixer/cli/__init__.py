"""Command-line interface (``demixer`` and ``python -m demixer``)."""
