"""Reports read evidence through the store's query interface, judge it and write documents."""
