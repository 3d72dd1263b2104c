"""``python -m copycat_nuke`` (and ``torchrun -m copycat_nuke``) runs the ``copycat`` command."""

import sys

from copycat_nuke.cli import main

sys.exit(main())
