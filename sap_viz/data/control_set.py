"""The verdict's control set: which ordinary prompts set the boundary (constants only, so ``--help`` stays light).

The control set is the first ``CONTROL_ROWS`` draws, in the order ``CONTROL_SEED`` draws them, of the ShareGPT
first turns held out from the training table (``dataset.held_out_ordinary``); ``VerdictCalibrationConfig`` starts
from these, and the steering evaluation's ordinary prompts are drawn after them.
"""

CONTROL_ROWS = 1000
CONTROL_SEED = 0
