"""`python -m nnsearch`."""

import sys

from nnsearch.cli import main

sys.exit(main())
