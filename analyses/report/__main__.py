"""``python -m analyses.report``."""

from analyses.report.cli import main

raise SystemExit(main())
