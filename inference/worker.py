"""``python -m inference.worker --queue redis://…`` (console script ``mupl-worker``): a model worker on
the shared queue, on any machine (``inference.serving.redis_worker``). The local worker process
needs no command: the bot starts it (``inference.serving.local_worker``)."""

import sys

from inference.serving.redis_worker import main

if __name__ == "__main__":
    sys.exit(main())
