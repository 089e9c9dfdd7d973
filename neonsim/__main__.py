import sys

from neonsim.cli import main

sys.exit(main())
