"""moebench: where should the weights of a Mixture-of-Experts model live?

The package follows the flow config -> plan -> run -> store -> analysis; see docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
