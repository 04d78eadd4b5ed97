import sys

from bertmini.cli import main

sys.exit(main())
