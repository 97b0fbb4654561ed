"""sconeflow: the Scones Unlimited ML workflow (stage, train, serve, orchestrate, monitor), local-first."""

__version__ = "0.1.0"
