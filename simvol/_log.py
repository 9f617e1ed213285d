"""Python's advice for libraries: simvol's loggers stay silent until the application configures logging.

Imported by every subpackage rather than by ``simvol/__init__``, so ``import simvol`` stays cheap (the CLI takes
its signals before anything heavy loads)."""

import logging

logging.getLogger("simvol").addHandler(logging.NullHandler())
