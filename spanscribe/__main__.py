import sys

from spanscribe.cli import main

sys.exit(main())
