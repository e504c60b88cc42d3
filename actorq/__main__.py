"""``python -m actorq`` runs the command-line interface."""

from ._cli import main

main()
