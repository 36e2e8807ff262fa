"""Party (Beteiligte) and bank-account sync between EspoCRM and Advoware: field mapping (`mapping`) and sync (`sync`)."""
