import sys

from sanspi.cli import main

sys.exit(main())
