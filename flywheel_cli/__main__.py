"""`python -m flywheel_cli`: the `flywheel` command without its console script."""
import sys

from flywheel_cli.main import main

sys.exit(main())
