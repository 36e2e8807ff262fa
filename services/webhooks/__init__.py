"""EspoCRM webhook intake: authenticate, split, validate, mark in the ledger, enqueue (`intake`)."""
