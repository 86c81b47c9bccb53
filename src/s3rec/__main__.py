"""``python -m s3rec`` (and ``torchrun ... -m s3rec pretrain``): the same as the ``s3rec`` command."""

import sys

from .cli import main

sys.exit(main())
