"""Serving across machines: the Redis Streams transport, its worker loop, metrics and health.

New code only for now; the local transport, the client, the worker and the benchmark join this
package once the queue work of issue 12 has landed (see README, "Deploying on several machines").
Torch-free except where a module says otherwise.
"""
