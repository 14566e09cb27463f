import sys

from onedoor.cli import main

sys.exit(main())
