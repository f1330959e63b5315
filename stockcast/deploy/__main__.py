"""``python -m stockcast.deploy serve``: see ``stockcast.deploy.serve``."""

from stockcast.deploy.serve import main

raise SystemExit(main())
