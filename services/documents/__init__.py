"""Document sync: EspoCRM documents to xAI (`sync`) and the per-entity xAI collections (`collections`)."""
