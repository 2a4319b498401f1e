"""The call gateway: ``engine serve`` accepts phone and browser calls and runs one ``Session`` per call."""
