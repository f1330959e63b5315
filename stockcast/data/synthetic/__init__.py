"""Generated markets: demo data, test fixtures and benchmark inputs, kept apart from the data of record.

``generator`` simulates prices and quarterly reports with the statistics of real equities (and, optionally, their
quirks) and writes them in the CSV contract, with an oracle of the best achievable prediction beside them.
"""
