"""``python -m snnrobust`` (and ``torchrun ... -m snnrobust``): the command line."""

import sys

from .cli.main import main

sys.exit(main())
