"""``python -m s3rec.cli``: the ``s3rec`` command (what ``s3rec reproduce --jobs`` starts its workers with)."""

import sys

from . import main

sys.exit(main())
