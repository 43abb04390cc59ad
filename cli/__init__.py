"""polydiff.cli: the typer application; each domain contributes a sub-app."""
