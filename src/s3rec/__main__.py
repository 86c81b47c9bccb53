"""`python -m s3rec ...`: the same as the `s3rec` command."""

import sys

from .cli import main

sys.exit(main())
