"""``python -m relay.assistant --port N``."""

import sys

from relay.assistant.server import main

sys.exit(main())
