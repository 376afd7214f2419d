"""sap-viz: see and steer the safety geometry inside a language model (Safety Polytope, ICML 2025)."""

__version__ = "0.1.0"
