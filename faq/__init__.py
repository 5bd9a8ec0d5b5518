"""Knowledge base of the tax hotline: FAQ entries, their loading, and question matching."""
