"""Sub-commands of the ``mimamo`` console script. Each module has ``register(subparsers)``."""
