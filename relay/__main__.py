"""``python -m relay ...`` is ``relay ...``."""

from relay.cli import main

raise SystemExit(main())
