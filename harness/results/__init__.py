"""A results folder: what a row is (`record`), the format's versions and their loaders (`schema`), the one
writer (`store.ResultsStore`) and the one reader (`reader`). Import the modules themselves."""
