"""Value codecs shared by sources and targets (BSON ↔ Arrow)."""
