"""``facewire web``: the dashboard (live view, detection log, face library, unknown visitors, alerts, thresholds)."""
