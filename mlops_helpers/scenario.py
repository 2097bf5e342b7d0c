"""The scenario's names and fixed values: the faults the generator can inject, the devices,
placements and columns of the raw extracts. Plain constants that import nothing, so the
command line and the parameter rules can use them without loading pandas."""

from __future__ import annotations

FAULTS = (
    "schema_change",
    "duplicates",
    "nulls",
    "out_of_range",
    "late_rows",
    "empty_day",
    "unknown_category",
)
FAULT_DESCRIPTIONS = {
    "schema_change": "column page_load_ms renamed to page_load_time_ms by an upstream release",
    "duplicates": "5% of impressions delivered twice",
    "nulls": "5% of impressions lack a required placement_id or device",
    "out_of_range": "5% of scroll_depth values sent in percent (0-100) instead of a fraction",
    "late_rows": "5% of rows carry the previous day's timestamp",
    "empty_day": "the day's extracts are empty (impressions and labels)",
    "unknown_category": "5% of impressions name a device or placement the reference lacks",
}
FAULT_FRACTION = 0.05

DEVICES = ("desktop", "mobile", "tablet")
SITE_CATEGORIES = ("news", "sports", "entertainment", "tech", "finance")
AD_FORMATS = ("banner", "video", "native")
POSITIONS = ("above_fold", "below_fold")
AD_SIZES = ((300, 250), (728, 90), (320, 50), (160, 600), (300, 600))
N_PLACEMENTS = 40

IMPRESSION_COLUMNS = (
    "impression_id",
    "ts",
    "placement_id",
    "device",
    "ad_width",
    "ad_height",
    "page_load_ms",
    "scroll_depth",
    "time_on_page_s",
)
LABEL_COLUMNS = ("impression_id", "viewable")
