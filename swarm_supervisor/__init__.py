"""Local Swarm: a voting swarm of small coding models behind one OpenAI-compatible endpoint."""

import time as _time

__version__ = "0.1.0"

#: when this package was first imported: `swarm up --verbose` splits the Python start from the imports
IMPORTED_AT = _time.time()
