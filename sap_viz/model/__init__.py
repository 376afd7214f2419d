"""The model side: loading, decoder-layer lookup, hooks, chat prompts and hidden-state features."""
