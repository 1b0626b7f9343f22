"""The claims ledger: each of the paper's claims judged from the results files."""
