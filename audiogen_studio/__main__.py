"""``python -m audiogen_studio`` runs the command-line interface."""

from audiogen_studio.cli.main import main

raise SystemExit(main())
