"""One node, every core: ``relay serve --workers N`` (the supervisor, the shared node state, the hand-off)."""
