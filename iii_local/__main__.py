import sys

from iii_local.cli import main

sys.exit(main())
