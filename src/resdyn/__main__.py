"""``python -m resdyn``: the ``resdyn`` console script."""

from resdyn_entry import main

main()
