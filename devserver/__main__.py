"""`python -m devserver`: the development model server (devserver/model_server.py)."""
import sys

from devserver.model_server import main

sys.exit(main())
