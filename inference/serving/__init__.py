"""Serving: how photos travel from the bot to the models and back.

``client`` (admission, fairness, deadlines; ``scheduler``) talks to a ``jobs.Transport``:
``local_transport`` (one supervised ``local_worker`` process, the default) or ``redis_transport``
(``redis_worker`` processes on any machine, one shared Redis Streams queue). ``batches`` is what both
workers share; ``metrics`` the Prometheus ``/metrics`` and ``/healthz``; ``benchmark`` measures it all.
Torch-free: the pipeline (``inference.models``) is imported only inside a worker.
"""
