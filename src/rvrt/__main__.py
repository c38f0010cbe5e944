"""``python -m rvrt`` (also what ``torchrun -m rvrt train ...`` runs)."""

import sys

from rvrt.cli import main

sys.exit(main())
