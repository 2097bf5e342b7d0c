"""Helpers for the mlops-workbook notebooks: data, ETL, validation, training, tracking.

Importing the package does nothing but import: no folders are created, no tracking URI
is set, no logging is configured. Each side effect is a function call that says so.
"""

__version__ = "0.1.0"
