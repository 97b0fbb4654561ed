"""sconeflow: the Scones Unlimited ML workflow, local-first.

Stage CIFAR-100, train, serve, orchestrate (ASL) and monitor, in AWS's formats.
"""

__version__ = "0.1.0"
