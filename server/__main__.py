import sys

from server.operator.cli import main

sys.exit(main())
