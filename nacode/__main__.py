"""Allow ``python -m nacode``."""

from nacode.cli import main

raise SystemExit(main())
