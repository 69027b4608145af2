"""``python -m helpdesk_policy`` runs the CLI."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
