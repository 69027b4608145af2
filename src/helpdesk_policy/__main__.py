"""``python -m helpdesk_policy`` runs the ``helpdesk-policy`` command line."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    # prog_name keeps usage and error messages identical to the console script.
    main(prog_name="helpdesk-policy")
