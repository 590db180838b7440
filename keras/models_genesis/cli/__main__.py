import sys

from models_genesis.cli import main

sys.exit(main())
