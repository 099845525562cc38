"""Allow ``python -m clinfuse`` (and ``torchrun -m clinfuse``)."""

from clinfuse.cli import main

main()
