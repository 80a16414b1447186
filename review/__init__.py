"""`yotsuba review`: the dataset in a browser, likely label errors first, corrections as catalog rows."""
