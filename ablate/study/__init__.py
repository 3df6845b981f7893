"""A study: sweep expansion, the trial ledger, launching trials, progress and tracking."""
