"""The workbook's tests; :mod:`tests.support` holds the helpers they share."""
