"""Hub-ready polytopes: an exported folder that uploads as it is, loading one by its Hub id, pushing one.

``recipe.py``: the training config a polytope stores (``training_config.json``), enough to train it again.
``card.py``: the model card (README.md with the Hub's YAML front matter, the facet table, metrics, limits).
``export.py``: one export for the CLI and the app's download. ``remote.py``: Hub ids, download and upload.
Nothing here imports torch-heavy code at module level beyond the artifact loader, nor Gradio.
"""
