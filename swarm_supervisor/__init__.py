"""Local Swarm: a voting swarm of small coding models behind one OpenAI-compatible endpoint."""

__version__ = "0.1.0"
