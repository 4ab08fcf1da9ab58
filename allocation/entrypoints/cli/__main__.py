import sys

from allocation.entrypoints.cli import main

sys.exit(main())
