"""``python -m inference.benchmark`` (console script ``mupl-benchmark``): the whole photo path through
client, transport and worker; see ``inference.serving.benchmark``."""

import sys

from inference.serving.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
