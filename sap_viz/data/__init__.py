"""Data: the harm taxonomy, the offline sources, dataset assembly and splits, user files, jailbreak templates."""
