"""Building a polytope end to end: train and evaluate (pipeline.py), retrain from a recorded config (retrain.py),
the steering part (steering_part.py) and the answer check fitted for it (answer_check_fit.py).

Why a layer of its own: these combine the method (``method/``) with the readings of ``analysis/`` (facet
statistics, the facet check), so they sit above both.
"""
