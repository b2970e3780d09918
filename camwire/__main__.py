import sys

from camwire.cli import main

sys.exit(main())
