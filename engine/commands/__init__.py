"""Sub-commands of `tunedeck`, one module each, each with `register(subparsers)`.

A handler is set with `parser.set_defaults(func=...)`; it returns the exit code. Keep imports of
heavy libraries inside the handler so `tunedeck --help` stays instant.
"""
