"""The decisions kept: the kernel's lists and the journal that restores
them, changed through one write path (store.py)."""
