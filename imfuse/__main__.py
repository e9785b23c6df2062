import sys

from imfuse.cli import main

sys.exit(main())
