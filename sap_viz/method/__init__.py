"""The Safety Polytope method: the polytope, its training, Safe Flow steering, monitored generation, calibration and its files."""
