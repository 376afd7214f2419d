import sys

from sap_viz.cli import main

sys.exit(main())
