"""``python -m tinyllm ...`` runs the ``tinyllm`` command."""

import sys

from tinyllm.cli import main

sys.exit(main())
