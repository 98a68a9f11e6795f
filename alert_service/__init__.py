"""facewire result subscribers: detection log (recorder), intruder alerts, threshold statistics, active nodes."""
