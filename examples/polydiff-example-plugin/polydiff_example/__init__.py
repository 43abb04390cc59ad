"""An example polydiff plugin package."""
