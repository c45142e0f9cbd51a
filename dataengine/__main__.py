import sys

from dataengine.cli import main

sys.exit(main())
