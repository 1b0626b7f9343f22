import sys

from vit1d.cli import main

sys.exit(main())
