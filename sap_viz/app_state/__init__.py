"""The app's state without gradio: polytope store and uploads, generation sessions, training and map jobs, counters."""
