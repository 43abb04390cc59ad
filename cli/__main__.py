"""``python -m polydiff.cli`` runs the same application as the ``polydiff`` console script."""
from .app import main

main()
