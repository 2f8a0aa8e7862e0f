import sys

from staa.cli import main

sys.exit(main())
