"""Evaluation harness: Self-Extend against the methods local users can try today, on
one engine, one model, in one run (passkey, digits, perplexity, speed)."""
