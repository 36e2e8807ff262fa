"""Advoware appointments to Google Calendar: mapping (`mapping`), the pure planner (`plan`),
the executor (`sync`) and the per-employee job topics (`jobs`)."""
